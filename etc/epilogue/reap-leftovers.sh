#!/bin/sh
# glexec epilogue: end what the payload left behind, and say so in syslog.
#
# Runs as root after every payload (epilogue = /usr/libexec/glexec/reap-leftovers.sh), while the
# payload's leftovers are still alive. It kills the processes of the payload account that are in
# the payload's process group (or, when glexec gives one, in the payload's cgroup), and only
# those: other jobs of the same account keep running. It never fails the job because of logging.
#
# Edit: the syslog facility and tag, and SIGNAL (KILL at once, or TERM to be gentle).
FACILITY=daemon
TAG=glexec-epilogue
SIGNAL=KILL

log() {
    logger -t "$TAG" -p "$FACILITY.$1" -- "$2" 2>/dev/null || true
}

uid=${GLEXEC_EPILOG_TARGET_UID:?not run by glexec}
pgid=${GLEXEC_EPILOG_TARGET_PGID:?not run by glexec}
user=${GLEXEC_EPILOG_TARGET_USER:-$uid}

# The payload's cgroup, when glexec contains payloads in cgroups: everything in it is the job's.
if [ -n "${GLEXEC_EPILOG_TARGET_CGROUP:-}" ] && [ -r "$GLEXEC_EPILOG_TARGET_CGROUP/cgroup.procs" ]; then
    pids=$(cat "$GLEXEC_EPILOG_TARGET_CGROUP/cgroup.procs")
    where="cgroup $GLEXEC_EPILOG_TARGET_CGROUP"
else
    # Processes of the payload account in the payload's process group. A process that left the
    # group (setsid, double fork) is not found this way: that needs the cgroup.
    pids=$(ps -o pid=,pgid= -u "$uid" | awk -v pgid="$pgid" '$2 == pgid { print $1 }')
    where="process group $pgid"
fi

if [ -z "$pids" ]; then
    log info "job of $user (payload pid ${GLEXEC_EPILOG_TARGET_PID:-?}, rc ${GLEXEC_EPILOG_TARGET_RC:-?}): nothing left in $where"
    exit 0
fi

list=$(echo "$pids" | tr '\n' ' ')
# shellcheck disable=SC2086 # one argument per pid
if kill -s "$SIGNAL" $pids 2>/dev/null; then
    log notice "job of $user: sent SIG$SIGNAL to what was left in $where: $list"
else
    # Some may have exited meanwhile; that is not a failure of the epilogue.
    log warning "job of $user: SIG$SIGNAL to $where did not reach all of: $list"
fi
exit 0
