#!/usr/bin/env bash
# Starts or stops the throwaway cluster: scripts/cluster.sh start|stop
source "$(dirname "$0")/common.sh"
case "${1:-start}" in
    start) cluster_start ;;
    stop) cluster_stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
