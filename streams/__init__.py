"""Kafka substrate of Kadence: settings, topics, Avro serde, clients, the exactly-once processing
loop, RocksDB partition stores and the embedded broker. Knows nothing of workflow semantics."""
