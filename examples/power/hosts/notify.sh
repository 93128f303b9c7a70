#!/bin/sh
# A notify command as upsmon's NOTIFYCMD would get it: the message as the argument,
# NOTIFYTYPE and UPSNAME in the environment. Replace with mail, ntfy, Matrix, ...
log="${MOTTE_REHEARSAL_LOG:-/tmp/motte-rehearsal.log}"
printf '%s notify %s %s: %s\n' "$(date +%s.%N)" "$NOTIFYTYPE" "$UPSNAME" "$1" >> "$log"
