#!/bin/bash
# kafka-run-class.sh CLASS [ARGS]: runs a class of the Kafka jars, honouring the variables
# Kafka's own script reads (KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_OPTS,
# KAFKA_LOG4J_OPTS). Defaults chosen for a small test machine: the C1 compiler only and the
# serial collector start a JVM in about half the time.
set -e
heap=${KAFKA_HEAP_OPTS:--Xms64m -Xmx512m}
perf=${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto -Djava.awt.headless=true}
log4j=${KAFKA_LOG4J_OPTS:--Dlog4j.configuration=file:/opt/kafka/config/tools-log4j.properties}
# shellcheck disable=SC2086 # the option variables are word lists, as in Kafka's script
exec java $heap $perf $log4j ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*' "$@"
