#!/bin/sh
# Rehearsal stand-in for a host command: record what ran and when, take a moment, succeed.
#   record.sh "WHAT" [SECONDS]
# Appends "<unix time> <WHAT>" to $MOTTE_REHEARSAL_LOG (default /tmp/motte-rehearsal.log).
log="${MOTTE_REHEARSAL_LOG:-/tmp/motte-rehearsal.log}"
printf '%s %s\n' "$(date +%s.%N)" "$1" >> "$log"
[ -n "${2:-}" ] && sleep "$2"
exit 0
