#!/bin/sh
# Example epilogue script for use with gLExec 0.9, from the Nikhef wiki page "GLExec Epilogue
# Functionality" (author Mischa Salle), completed where the page lost lines (marked "completed").
# It kills the processes that the payload left in its process group, and logs what remains of
# the payload account. Review it before use: it runs as root after every payload.
# Nikhef and/or the author do NOT accept any liability for any damage that might occur when
# using this script.

# Location of logfile (completed: the page lost this line)
LOGFILE=/var/log/glexec/epilogue.log
# Account the epilogue runs as (completed: epilogue_user of glexec.conf)
epil_uname=$(id -un)

# Some useful variables
LOGDIR=$(dirname "$LOGFILE")
PROG=$(basename "$0")
FMT="%b %e %H:%M:%S $(hostname) ${PROG}[$$]: "
EPIL_UID=$(id -u "$epil_uname")

# Create log directory and file if not exist and make sure at least logfile has
# right permission
[ ! -d "$LOGDIR" ] && { mkdir -p "$LOGDIR" && chmod 0700 "$LOGDIR" || exit 1; }
[ ! -f "$LOGFILE" ] && { touch "$LOGFILE" || exit 1; }
chmod 0600 "$LOGFILE" || exit 1

# Log general information (completed: the page lost the end of this line)
echo "$(date +"$FMT")" "Running as uid $EPIL_UID ($epil_uname) for" \
    "uid $GLEXEC_EPILOG_TARGET_UID ($GLEXEC_EPILOG_TARGET_USER)," \
    "payload pid $GLEXEC_EPILOG_TARGET_PID, rc $GLEXEC_EPILOG_TARGET_RC" >> "$LOGFILE"

# Get process IDs of all processes in the payload process group running as the
# target user. Note: this is no guarantee to catch all processes as the payload
# could have started a new process group.
# (completed: the page used grep/cut on fixed columns; awk compares the group exactly)
pids=$(ps -o pid=,pgid= -u "$GLEXEC_EPILOG_TARGET_UID" | awk -v pgid="$GLEXEC_EPILOG_TARGET_PGID" '$2 == pgid { print $1 }')
if [ -n "$pids" ]; then
    # shellcheck disable=SC2086 # the pids as separate words, on one line
    echo "$(date +"$FMT")" "Sending SIGKILL to PIDs:" $pids >> "$LOGFILE"
    # shellcheck disable=SC2086 # one argument per pid
    if ! kill_output="$(kill -9 $pids 2>&1)"; then
        # Log error but do not fail epilogue on it
        echo "$(date +"$FMT")" "$kill_output" >> "$LOGFILE"
    fi
fi

# 1 second gracetime
sleep 1

# Log remaining process IDs of processes running as the payload user: these
# might have come from this or other jobs
rem_pids=$(ps -o pid= -u "$GLEXEC_EPILOG_TARGET_UID")
if [ -n "$rem_pids" ]; then
    # shellcheck disable=SC2086 # the pids as separate words, on one line
    echo "$(date +"$FMT")" "Remaining processes from uid" \
        "$GLEXEC_EPILOG_TARGET_UID:" $rem_pids >> "$LOGFILE"
else
    echo "$(date +"$FMT")" "No remaining processes from uid" \
        "$GLEXEC_EPILOG_TARGET_UID" >> "$LOGFILE"
fi

# All done
exit 0
