/* The epilogue in the monitor (epilogue.c): run when the payload left nothing, as phase 2 would. */
#ifndef GLEXEC_EPILOGUE_H
#define GLEXEC_EPILOGUE_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

/* What the plan says of the epilogue (its epilogue-* fields, src/plan.ts MonitorEpilogue). */
struct monitor_epilogue {
    char **argv; /* start-payload's argv for it, [0] start-payload's name, NULL-terminated */
    size_t arg_count;
    char **env; /* NAME=value; the payload's pid, group and return code are slots (I, G, R) */
    size_t env_count;
    long long timeout_ms; /* -1: the monitor never runs the epilogue */
    long long grace_ms;
    char *leftover_path; /* GLEXEC_EPILOG_LEFTOVER_FILE, made just before the epilogue; NULL for none */
    long long leftover_gid; /* its group (mode 0640); -1: root's alone (0600) */
    char *leftover_text;
    int leftover_made; /* the monitor made it (and only then removes it) */
    char **watch;        /* "DEV INO CTIME_NS PATH": what the trust walk saw */
    size_t watch_count;
};

/* An epilogue's run, as the monitor hands it to phase 2 (epilogue-run, epilogue-helper-status). */
struct epilogue_run {
    pid_t pid;
    int wait_status;
    int ended_by; /* 0, SIGTERM (after epilogue_timeout) or SIGKILL (after kill_grace too) */
    long long duration_ms;
    int group_left; /* its process group still had members once it had exited */
    char helper_status[2 * PATH_MAX];
};

/* Parses the plan's epilogue-leftover-list in place ("PATH\nGID\nTEXT", or empty); 0 when it is not that. */
int parse_leftover_list(char *value, struct monitor_epilogue *epilogue);

/*
 * PRIVILEGE: makes the leftover list phase 1 prepared (a new root file, as src/sys/files.ts
 * createRootFile makes one); 1 when made or none is wanted.
 */
int make_leftover_list(struct monitor_epilogue *epilogue);

/* Whether every path the trust walk looked at is as phase 1 saw it (device, inode, ctime, by lstat). */
int epilogue_watch_unchanged(const struct monitor_epilogue *epilogue);

/*
 * PRIVILEGE: runs the epilogue through start-payload (a new session, / as its directory, stdio on
 * /dev/null) with the payload's pid and return code filled in, to its end or its timeout.
 */
void run_epilogue(const struct monitor_epilogue *epilogue, pid_t payload_pid, int payload_rc, struct epilogue_run *run);

/* An epilogue that exited 0, on its own, after a start without failure, and left nothing in its group. */
int epilogue_succeeded(const struct epilogue_run *run);

#endif
