#!/bin/sh
# glexec epilogue: empty the payload's scratch directory after every job.
#
# Runs as root after every payload (epilogue = /usr/libexec/glexec/clean-scratch.sh). The scratch
# directory of a job is SCRATCH_ROOT/<payload account>. The files are removed *as the payload
# account* (setpriv), never as root, so a symlink or a rename planted by the payload cannot make
# root delete anything the account could not delete itself. The directory itself is kept.
#
# Edit: SCRATCH_ROOT, where each account's scratch directory lives.
SCRATCH_ROOT=/scratch

uid=${GLEXEC_EPILOG_TARGET_UID:?not run by glexec}
gid=${GLEXEC_EPILOG_TARGET_GID:?not run by glexec}
user=${GLEXEC_EPILOG_TARGET_USER:?not run by glexec}
dir="$SCRATCH_ROOT/$user"

# Nothing to do without a directory; a symlink or a directory of another owner is left alone.
[ -d "$dir" ] && [ ! -L "$dir" ] || exit 0
[ "$(stat -c %u "$dir")" = "$uid" ] || {
    logger -t glexec-epilogue -p daemon.warning -- "$dir is not owned by uid $uid; not cleaned" 2>/dev/null
    exit 0
}

# find -delete does not follow symlinks; running as the account bounds what it can remove.
setpriv --reuid="$uid" --regid="$gid" --clear-groups -- \
    find "$dir" -mindepth 1 -delete 2>/dev/null
status=$?
logger -t glexec-epilogue -p daemon.info -- "cleaned $dir (find exited $status)" 2>/dev/null
# A file the account could not remove is no reason to fail the job.
exit 0
