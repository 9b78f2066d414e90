/*
 * The epilogue in the monitor (docs/architecture.md, "The epilogue in the monitor"). When the
 * payload left nothing, phase 2 would only run the epilogue, remove the cgroup and write the
 * record; the monitor does that itself, so such a run starts node once. TypeScript decided
 * everything (who runs it, with which environment, the trust walk); this file checks that the
 * walk still holds, runs it as src/epilogue.ts runEpilogue does, and reports. Anything but a
 * plain success goes to phase 2 with the report (src/epilogue.ts reportMonitorEpilogue).
 */
#define _GNU_SOURCE
#include "epilogue.h"
#include "monitor.h"
#include "start-payload.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int parse_leftover_list(char *value, struct monitor_epilogue *epilogue) {
    epilogue->leftover_path = NULL;
    epilogue->leftover_gid = -1;
    if (value[0] == '\0')
        return 1;
    char *gid = strchr(value, '\n');
    char *text = gid ? strchr(gid + 1, '\n') : NULL;
    if (value[0] != '/' || !text)
        return 0;
    *gid++ = '\0';
    *text++ = '\0';
    if (gid[0] != '\0') {
        char *end;
        errno = 0;
        long long number = strtoll(gid, &end, 10);
        if (errno || *end || gid[0] < '0' || gid[0] > '9' || number >= (long long)UINT32_MAX)
            return 0;
        epilogue->leftover_gid = number;
    }
    epilogue->leftover_path = value;
    epilogue->leftover_text = text;
    return 1;
}

int make_leftover_list(struct monitor_epilogue *epilogue) {
    if (!epilogue->leftover_path)
        return 1;
    int fd = open(epilogue->leftover_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0)
        return 0;
    epilogue->leftover_made = 1;
    int ok = write_fully(fd, epilogue->leftover_text, strlen(epilogue->leftover_text)) == 0;
    if (ok && epilogue->leftover_gid >= 0)
        ok = fchown(fd, 0, (gid_t)epilogue->leftover_gid) == 0 && fchmod(fd, 0640) == 0;
    if (close(fd) != 0)
        ok = 0;
    return ok;
}

int epilogue_watch_unchanged(const struct monitor_epilogue *epilogue) {
    for (size_t i = 0; i < epilogue->watch_count; i++) {
        unsigned long long dev, ino, ctime_ns, uid, gid, mode;
        int path_at = 0;
        if (sscanf(epilogue->watch[i], "%llu %llu %llu %llu %llu %llu %n", &dev, &ino, &ctime_ns, &uid, &gid, &mode,
                   &path_at) != 6 ||
            path_at == 0)
            return 0;
        struct stat st;
        if (lstat(epilogue->watch[i] + path_at, &st) != 0)
            return 0;
        unsigned long long seen_ns = (unsigned long long)st.st_ctim.tv_sec * 1000000000ULL + (unsigned long long)st.st_ctim.tv_nsec;
        if ((unsigned long long)st.st_dev != dev || (unsigned long long)st.st_ino != ino ||
            (unsigned long long)st.st_uid != uid || (unsigned long long)st.st_gid != gid ||
            (unsigned long long)st.st_mode != mode)
            return 0;
        /*
         * A directory's ctime changes with every name added or removed in it, which its trust does
         * not depend on (a component replaced is a new inode); a file's or a link's with any write.
         */
        if (!S_ISDIR(st.st_mode) && seen_ns != ctime_ns)
            return 0;
    }
    return epilogue->watch_count > 0;
}

/* The environment with its slots filled in: the payload's pid (I), its group (G, the same) and return code (R). */
static char **fill_environment(const struct monitor_epilogue *epilogue, pid_t payload_pid, int payload_rc) {
    char **env = calloc(epilogue->env_count + 1, sizeof *env);
    if (!env)
        monitor_fail("out of memory");
    for (size_t i = 0; i < epilogue->env_count; i++) {
        const char *entry = epilogue->env[i];
        const char *slot = strchr(entry, SLOT_BYTE);
        if (!slot) {
            env[i] = epilogue->env[i];
            continue;
        }
        long value;
        if (slot[1] == 'I' || slot[1] == 'G')
            value = (long)payload_pid;
        else if (slot[1] == 'R')
            value = payload_rc;
        else
            monitor_fail("an unknown slot in the epilogue's environment");
        /* Phase 1 made each slot a whole value: NAME=SLOT. */
        if (slot[2] != '\0' || strchr(slot + 1, SLOT_BYTE))
            monitor_fail("a slot in the epilogue's environment is not a whole value");
        size_t size = (size_t)(slot - entry) + 32;
        env[i] = malloc(size);
        if (!env[i] || snprintf(env[i], size, "%.*s%ld", (int)(slot - entry), entry, value) < 0)
            monitor_fail("out of memory");
    }
    return env;
}

/*
 * PRIVILEGE: the epilogue's start as root, in a session of its own, with / as its directory, stdio
 * on /dev/null and its status pipe on 3, as src/sys/proc.ts spawnEpilogueProgram starts
 * start-payload; then start-payload's steps in this child (start_payload_run).
 */
static pid_t start_epilogue(char **argv, char **env, int status_write) {
    pid_t pid = fork();
    if (pid < 0)
        monitor_fail("fork");
    if (pid > 0)
        return pid;
    int status_fd = child_high_copy(status_write);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || setsid() < 0 || chdir("/") != 0)
        child_cannot_start(status_fd, "cannot set up the epilogue's start");
    null = child_high_copy(null);
    /* Node raises its soft descriptor limit to the hard one at start-up, so phase 2's epilogue had that. */
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &files) != 0)
            child_cannot_start(status_fd, "cannot raise the epilogue's descriptor limit");
    }
    if (dup2(null, 0) != 0 || dup2(null, 1) != 1 || dup2(null, 2) != 2 || dup2(status_fd, 3) != 3)
        child_cannot_start(status_fd, "cannot set up the epilogue's start");
    child_close_from(4U);
    start_payload_run(argv, env);
}

/*
 * Waits for `pid` until `deadline` (CLOCK_MONOTONIC ms; -1: no deadline). 1 with its wait status
 * once it has ended, 0 at the deadline. Signals meanwhile are dropped, as while phase 2 runs.
 */
static int wait_until(pid_t pid, long long deadline, int *status) {
    sigset_t all;
    if (sigfillset(&all) != 0)
        monitor_fail("sigfillset");
    for (;;) {
        pid_t done = waitpid(pid, status, WNOHANG);
        if (done == pid)
            return 1;
        if (done < 0 && errno != EINTR)
            monitor_fail("waitpid");
        if (deadline < 0) {
            if (sigwaitinfo(&all, NULL) < 0 && errno != EINTR)
                monitor_fail("sigwaitinfo");
            continue;
        }
        long long left = deadline - monotonic_ms();
        if (left <= 0)
            return 0;
        struct timespec wait = {(time_t)(left / 1000), (long)(left % 1000) * 1000000L};
        if (sigtimedwait(&all, NULL, &wait) < 0 && errno != EAGAIN && errno != EINTR)
            monitor_fail("sigtimedwait");
    }
}

static void signal_group(pid_t pgid, int sig) {
    if (kill(-pgid, sig) != 0 && errno != ESRCH)
        monitor_fail("cannot signal the epilogue's process group");
}

void run_epilogue(const struct monitor_epilogue *epilogue, pid_t payload_pid, int payload_rc, struct epilogue_run *run) {
    memset(run, 0, sizeof *run);
    char **env = fill_environment(epilogue, payload_pid, payload_rc);
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0)
        monitor_fail("pipe2");
    long long started = monotonic_ms();
    run->pid = start_epilogue(epilogue->argv, env, pipe_fds[1]);
    if (close(pipe_fds[1]) != 0)
        monitor_fail("close");
    /* Up to epilogue_timeout: an exec that hangs (a dead network file system) meets it too. */
    read_helper_status(pipe_fds[0], run->helper_status, sizeof run->helper_status, started + epilogue->timeout_ms);
    if (close(pipe_fds[0]) != 0)
        monitor_fail("close");
    /* As runEpilogue: epilogue_timeout from the start, then SIGTERM to its group, kill_grace, SIGKILL. */
    if (!wait_until(run->pid, started + epilogue->timeout_ms, &run->wait_status)) {
        signal_group(run->pid, SIGTERM);
        run->ended_by = SIGTERM;
        if (!wait_until(run->pid, monotonic_ms() + epilogue->grace_ms, &run->wait_status)) {
            signal_group(run->pid, SIGKILL);
            run->ended_by = SIGKILL;
            wait_until(run->pid, -1, &run->wait_status);
        }
    }
    /* Reaped: a member of its group now is one it left (its pid cannot be reused while the group has members). */
    run->group_left = kill(-run->pid, 0) == 0;
    run->duration_ms = monotonic_ms() - started;
    for (size_t i = 0; i < epilogue->env_count; i++)
        if (env[i] != epilogue->env[i])
            free(env[i]);
    free(env);
}

int epilogue_succeeded(const struct epilogue_run *run) {
    return run->ended_by == 0 && !run->group_left && WIFEXITED(run->wait_status) && WEXITSTATUS(run->wait_status) == 0 &&
           strncmp(run->helper_status, "cwd ", 4) == 0 && strchr(run->helper_status, '\n') ==
           run->helper_status + strlen(run->helper_status) - 1;
}
