# The Kadence image: the `kadence` CLI (processors, topics) and the examples' worker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KADENCE_STATE_DIR=/var/lib/kadence

WORKDIR /app
COPY . /app
RUN pip install . \
 && useradd --create-home --uid 10001 kadence \
 && mkdir -p /var/lib/kadence \
 && chown kadence /var/lib/kadence

USER kadence
VOLUME ["/var/lib/kadence"]
CMD ["kadence", "--help"]
