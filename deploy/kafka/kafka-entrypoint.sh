#!/bin/sh
# The broker's configuration is /etc/kafka/server.properties (shipped, not secret) followed by
# /etc/kafka/secrets/server.properties (the deployment's own lines; a key given twice takes the last).
# On the first start the KRaft storage is formatted, creating the SCRAM users listed one per line in
# /etc/kafka/secrets/scram-users (they must exist before the broker can authenticate anyone, its own
# inter-broker user included). Then the broker runs in the foreground: the container's life is its life.
set -eu
classpath="/opt/kafka/lib/*"
conf=/tmp/server.properties
cat /etc/kafka/server.properties > "$conf"
if [ -f /etc/kafka/secrets/server.properties ]; then
    printf '\n' >> "$conf"
    cat /etc/kafka/secrets/server.properties >> "$conf"
fi
data=$(sed -n 's/^log\.dirs=//p' "$conf" | tail -n 1 | cut -d, -f1)
[ -n "$data" ] || { echo "kafka-entrypoint: no log.dirs in the configuration" >&2; exit 2; }
if [ ! -f "$data/meta.properties" ]; then
    set --
    if [ -f /etc/kafka/secrets/scram-users ]; then
        while IFS= read -r line; do
            [ -n "$line" ] && set -- "$@" --add-scram "$line"
        done < /etc/kafka/secrets/scram-users
    fi
    cluster_id=${KAFKA_CLUSTER_ID:-$(java -cp "$classpath" kafka.tools.StorageTool random-uuid)}
    java -Xmx256m -cp "$classpath" kafka.tools.StorageTool format "--cluster-id=$cluster_id" -c "$conf" "$@"
fi
# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS holds several JVM options
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Djava.io.tmpdir=/tmp \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=info -Dorg.slf4j.simpleLogger.showDateTime=true \
    -cp "$classpath" kafka.Kafka "$conf"
