# Sourced by the scripts that run Apache Kafka from the jars scripts/install-deps.sh resolved.
# Sets KAFKA_VERSION (from pom.xml), KAFKA_HOME (the cache, outside the repository) and
# KAFKA_CP (the classpath); `kafka_class CLASS ARGS...` runs one of Kafka's main classes.
KAFKA_TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_TOOLS_DIR/pom.xml")"
KAFKA_HOME="${STRAIT_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/strait/kafka-$KAFKA_VERSION}"
KAFKA_CP="$KAFKA_HOME/libs/*"

kafka_installed() {
  [ -f "$KAFKA_HOME/libs/kafka_2.13-$KAFKA_VERSION.jar" ] && [ -f "$KAFKA_HOME/.complete" ]
}

# Runs a Kafka main class (a tool or the broker) with the log4j2 config in this folder.
kafka_class() {
  local class=$1
  shift
  # shellcheck disable=SC2086
  java ${KAFKA_JAVA_OPTS:-} -cp "$KAFKA_CP" \
    -Dlog4j2.configurationFile="${KAFKA_LOG4J:-$KAFKA_TOOLS_DIR/log4j2-tools.properties}" \
    "$class" "$@"
}
