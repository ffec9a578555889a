#!/bin/sh
# A stand-in deploy script: prints what ferry tells it and pretends to work for a second.
# Real scripts would `git fetch && git checkout --detach --end-of-options "$FERRY_GIT_COMMIT"`
# (`--end-of-options`: no value is ever read as an option, git >= 2.24), build, restart, etc.
set -eu
echo "deploying $FERRY_APP/$FERRY_SERVICE (deployment $FERRY_DEPLOYMENT_ID, argument: ${1:-none})"
echo "source=$FERRY_SOURCE event=$FERRY_EVENT"
echo "repo=${FERRY_GIT_REPO:-} ref=${FERRY_GIT_REF:-} commit=${FERRY_GIT_COMMIT:-}"
echo "payload: $(wc -c < "$FERRY_PAYLOAD") bytes in $FERRY_PAYLOAD"
sleep 1
echo "done" >&2
