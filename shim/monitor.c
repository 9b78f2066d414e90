/*
 * glexec's monitor: the long-lived root process of a run (the glexec pid). TypeScript makes every
 * decision; the monitor only starts, waits and forwards (docs/architecture.md):
 *   1. phase 1 (node, a child) checks everything and writes the plan into a memory file, then
 *      exits; only a whole plan from a phase 1 that exited 0 is acted on, so a phase 1 that
 *      crashes or is killed runs nothing;
 *   2. the monitor starts the payload from the plan: its child, born in the payload's cgroup,
 *      runs start-payload's steps (start-payload.c, linked in: new session, limits, identity,
 *      working directory) and execs the payload,
 *      forwards the batch system's signals to its process group and waits for it;
 *   3. phase 2 (node, a child) gets the plan back with the outcome appended: leftovers, epilogue,
 *      kill, completion record; it tells the monitor on a pipe once its record is written; when
 *      the payload left nothing, the monitor runs the epilogue and writes the record itself
 *      (conclusion.c, epilogue.c) and phase 2 runs only if that did not go as foreseen;
 *   4. a phase 2 that ends without that signal: the monitor kills the payload's cgroup (or
 *      process group) and writes a minimal completion record itself.
 * The plan: "glexec-plan 1\n", then fields "KEY LENGTH\nBYTES\n" in a fixed order, then "end 0\n\n".
 * Every signal stays blocked in the monitor; it takes them with sigwaitinfo, so none ends it.
 */
#define _GNU_SOURCE
#include "monitor.h"
#include "conclusion.h"
#include "epilogue.h"
#include "proxy-copy.h"
#include "start-payload.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#ifndef GLEXEC_NODE
#error "GLEXEC_NODE must be defined at build time"
#endif

#define EXIT_SYSTEM_ERROR 202
#define PLAN_MAGIC "glexec-plan 1\n"
#define PLAN_END "end 0\n\n"
#define PLAN_MAX (64UL << 20)
#define FIELD_MAX (16UL << 20)
#define MAX_ITEMS 65536
/* start-payload's status: its working directory and a failure line, each escaped (up to 4 bytes a byte). */
#define STATUS_MAX (10 * PATH_MAX)
/* How long the monitor waits for room on the caller's stderr before it drops its message. */
#define STDERR_WAIT_MS 2000

/* The signals forwarded to the payload's process group: the list of src/linger.ts. */
static const int forwarded[] = {
    SIGHUP,  SIGINT,  SIGQUIT,  SIGTERM, SIGUSR1, SIGUSR2, SIGXCPU,   SIGXFSZ, SIGALRM, SIGCONT, SIGTSTP,
    SIGTTIN, SIGTTOU, SIGWINCH, SIGPWR,  SIGIO,   SIGSTKFLT, SIGSYS, SIGTRAP, SIGABRT, SIGPROF, SIGVTALRM,
};

struct plan {
    char **helper_argv; /* start-payload's argv, [0] its name, NULL-terminated */
    size_t helper_count;
    char **env;
    size_t env_count;
    char *cgroup; /* "" without a cgroup */
    char *record_file; /* "" for syslog */
    int record_facility;
    char *record_json; /* the completion record's JSON fields so far, without braces */
    char *record_text; /* the same as syslog's key=value text */
    int silent;        /* silent_logging: nothing on the caller's stderr */
    struct trivial_conclusion trivial; /* conclusion.c */
    struct monitor_epilogue epilogue;  /* epilogue.c */
    struct proxy_copy proxy_copy;      /* proxy-copy.c */
};

static int caller_stderr = 2;
static pid_t payload_pid;
/* Once reaped, the payload's pid (its group's id) may be reused: its group is never signalled again. */
static int payload_reaped;
/* Set once the payload is being ended, so that a failure on the way does not start it again. */
static int ending;
static struct plan plan;

static void say(const char *format, ...) {
    if (plan.silent)
        return;
    char line[512];
    va_list args;
    va_start(args, format);
    int length = vsnprintf(line, sizeof line, format, args);
    va_end(args);
    if (length < 0)
        return;
    /*
     * A caller that never drains its stderr must not hold the root monitor: wait a bounded time
     * for room. A pipe polls writable when a whole PIPE_BUF slot is free, and the line is shorter,
     * so the write does not block. (O_NONBLOCK is not set: the open file is shared with the caller.)
     * The exit code tells the caller too; nothing is left to do when its stderr is gone or full.
     */
    struct pollfd room = {.fd = caller_stderr, .events = POLLOUT, .revents = 0};
    if (poll(&room, 1, STDERR_WAIT_MS) != 1 || !(room.revents & POLLOUT))
        return;
    if (dprintf(caller_stderr, "glexec: %s\n", line) < 0)
        return;
}

static void emergency_end(const char *error);

/* A failure of the monitor itself: before the payload started nothing runs; after, it is ended and recorded. */
static _Noreturn void fail(const char *what) {
    int error = errno;
    /* The payload is ended before anything is said: the caller's stderr must not delay that. */
    if (payload_pid > 0 && !ending)
        emergency_end("monitor.failed");
    if (error)
        say("%s: %s", what, strerror(error));
    else
        say("%s", what);
    exit(EXIT_SYSTEM_ERROR);
}

_Noreturn void monitor_fail(const char *what) {
    fail(what);
}

long long monotonic_ms(void) {
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0)
        fail("clock_gettime");
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int write_fully(int fd, const char *data, size_t length) {
    while (length > 0) {
        ssize_t written = write(fd, data, length);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return -1;
        data += written;
        length -= (size_t)written;
    }
    return 0;
}

static void write_all(int fd, const char *data, size_t length) {
    if (write_fully(fd, data, length) != 0)
        fail("cannot write the plan");
}

static void write_field(int fd, const char *key, const char *value, size_t length) {
    char head[64];
    int head_length = snprintf(head, sizeof head, "%s %zu\n", key, length);
    if (head_length < 0 || (size_t)head_length >= sizeof head)
        fail("plan field too long");
    write_all(fd, head, (size_t)head_length);
    write_all(fd, value, length);
    write_all(fd, "\n", 1);
}

static void write_number_field(int fd, const char *key, long long value) {
    char text[32];
    int length = snprintf(text, sizeof text, "%lld", value);
    if (length < 0)
        fail("snprintf");
    write_field(fd, key, text, (size_t)length);
}

/* The whole memory file phase 1 wrote, NUL-terminated. */
static char *read_memfd(int fd, size_t *length) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        fail("fstat");
    if (st.st_size < 0 || (unsigned long long)st.st_size > PLAN_MAX) {
        errno = 0;
        fail("the plan is too large");
    }
    char *data = malloc((size_t)st.st_size + 1);
    if (!data)
        fail("out of memory");
    size_t done = 0;
    while (done < (size_t)st.st_size) {
        ssize_t got = pread(fd, data + done, (size_t)st.st_size - done, (off_t)done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            fail("cannot read the plan");
        done += (size_t)got;
    }
    data[done] = '\0';
    *length = done;
    return data;
}

static _Noreturn void refuse_plan(const char *why) {
    errno = 0;
    say("internal error: the plan of the decision phase is not valid (%s); nothing was run", why);
    exit(EXIT_SYSTEM_ERROR);
}

static void push(char ***items, size_t *count, char *item) {
    if (*count >= MAX_ITEMS)
        refuse_plan("too many items");
    char **grown = realloc(*items, (*count + 2) * sizeof **items);
    if (!grown)
        fail("out of memory");
    grown[(*count)++] = item;
    grown[*count] = NULL;
    *items = grown;
}

static const struct {
    const char *key;
    int repeated;
} plan_keys[] = {
    {"helper-arg", 1}, {"env", 1}, {"cgroup", 0}, {"record-file", 0}, {"record-facility", 0},
    {"record-json", 0}, {"record-text", 0}, {"silent", 0}, {"trivial-log-gid", 0}, {"trivial-ending", 1},
    {"trivial-record", 1}, {"epilogue-arg", 1}, {"epilogue-env", 1}, {"epilogue-times", 0},
    {"epilogue-leftover-list", 0}, {"epilogue-watch", 1}, {"proxy-copy", 0}, {"state", 0}, {"end", 0},
};
#define PLAN_KEY_COUNT (sizeof plan_keys / sizeof plan_keys[0])

/*
 * Parses the plan in place (each value's trailing newline becomes its NUL). Fields come in the
 * order of plan_keys, each once unless repeated; anything else is refused. Returns the length of
 * the part before "end", which phase 2 gets back.
 */
static size_t parse_plan(char *data, size_t length) {
    size_t magic = strlen(PLAN_MAGIC);
    if (length < magic || memcmp(data, PLAN_MAGIC, magic) != 0)
        refuse_plan("not a version 1 plan");
    push(&plan.helper_argv, &plan.helper_count, "start-payload");
    push(&plan.epilogue.argv, &plan.epilogue.arg_count, "start-payload");
    plan.env = calloc(1, sizeof *plan.env);
    plan.epilogue.env = calloc(1, sizeof *plan.epilogue.env);
    if (!plan.env || !plan.epilogue.env)
        fail("out of memory");
    plan.epilogue.timeout_ms = -1;
    size_t at = magic, stage = 0;
    for (;;) {
        size_t field_start = at;
        char *space = memchr(data + at, ' ', length - at);
        if (!space || space == data + at || (size_t)(space - (data + at)) > 32)
            refuse_plan("bad field name");
        size_t key_length = (size_t)(space - (data + at));
        size_t index = 0;
        while (index < PLAN_KEY_COUNT &&
               !(strlen(plan_keys[index].key) == key_length && memcmp(plan_keys[index].key, data + at, key_length) == 0))
            index++;
        if (index == PLAN_KEY_COUNT)
            refuse_plan("unknown field");
        while (stage < index && plan_keys[stage].repeated)
            stage++;
        if (index != stage)
            refuse_plan("field missing, repeated or out of order");
        if (!plan_keys[index].repeated)
            stage++;
        at += key_length + 1;
        size_t value_length = 0, digits = 0;
        for (; at < length && data[at] >= '0' && data[at] <= '9'; at++, digits++) {
            value_length = value_length * 10 + (size_t)(data[at] - '0');
            if (value_length > FIELD_MAX || (digits == 1 && data[at - 1] == '0'))
                refuse_plan("bad field length");
        }
        if (digits == 0 || at >= length || data[at] != '\n' || length - at - 1 < value_length + 1)
            refuse_plan("bad field length");
        char *value = data + at + 1;
        at += 1 + value_length;
        if (data[at] != '\n' || memchr(value, '\0', value_length) != NULL)
            refuse_plan("bad field value");
        data[at++] = '\0';
        const char *key = plan_keys[index].key;
        if (strcmp(key, "end") == 0) {
            if (value_length != 0 || at != length)
                refuse_plan("bad end");
            if (plan.trivial.log_gid < 0 ? plan.trivial.ending_count + plan.trivial.record_count != 0
                                         : plan.trivial.ending_count != SIGNAL_COUNT || plan.trivial.record_count == 0)
                refuse_plan("bad trivial conclusion");
            const struct monitor_epilogue *epilogue = &plan.epilogue;
            if (epilogue->timeout_ms < 0 ? epilogue->arg_count > 1 || epilogue->env_count > 0 || epilogue->watch_count > 0 ||
                                               epilogue->leftover_path
                                         : epilogue->arg_count < 2 || epilogue->watch_count == 0 || plan.trivial.log_gid < 0)
                refuse_plan("bad epilogue");
            if (plan.proxy_copy.present && plan.trivial.log_gid < 0)
                refuse_plan("bad proxy-copy");
            return field_start;
        }
        if (strcmp(key, "helper-arg") == 0)
            push(&plan.helper_argv, &plan.helper_count, value);
        else if (strcmp(key, "env") == 0)
            push(&plan.env, &plan.env_count, value);
        else if (strcmp(key, "cgroup") == 0)
            plan.cgroup = value;
        else if (strcmp(key, "record-file") == 0)
            plan.record_file = value;
        else if (strcmp(key, "record-facility") == 0) {
            char *end;
            errno = 0;
            long facility = strtol(value, &end, 10);
            if (errno || end == value || *end || facility < 0 || facility > LOG_LOCAL7)
                refuse_plan("bad record-facility");
            plan.record_facility = (int)facility;
        } else if (strcmp(key, "trivial-log-gid") == 0) {
            plan.trivial.log_gid = -1;
            if (value[0] != '\0') {
                char *end;
                errno = 0;
                long long gid = strtoll(value, &end, 10);
                if (errno || end == value || *end || value[0] < '0' || value[0] > '9' || gid > (long long)UINT32_MAX - 1)
                    refuse_plan("bad trivial-log-gid");
                plan.trivial.log_gid = gid;
            }
        } else if (strcmp(key, "epilogue-arg") == 0)
            push(&plan.epilogue.argv, &plan.epilogue.arg_count, value);
        else if (strcmp(key, "epilogue-env") == 0)
            push(&plan.epilogue.env, &plan.epilogue.env_count, value);
        else if (strcmp(key, "epilogue-times") == 0) {
            if (value[0] != '\0') {
                int used = 0;
                if (sscanf(value, "%lld %lld%n", &plan.epilogue.timeout_ms, &plan.epilogue.grace_ms, &used) != 2 ||
                    (size_t)used != value_length || value[0] < '0' || value[0] > '9' || plan.epilogue.timeout_ms < 0 ||
                    plan.epilogue.grace_ms < 0)
                    refuse_plan("bad epilogue-times");
            }
        } else if (strcmp(key, "epilogue-leftover-list") == 0) {
            if (!parse_leftover_list(value, &plan.epilogue))
                refuse_plan("bad epilogue-leftover-list");
        } else if (strcmp(key, "epilogue-watch") == 0)
            push(&plan.epilogue.watch, &plan.epilogue.watch_count, value);
        else if (strcmp(key, "proxy-copy") == 0) {
            if (!parse_proxy_copy(value, &plan.proxy_copy))
                refuse_plan("bad proxy-copy");
        }
        else if (strcmp(key, "trivial-ending") == 0)
            push(&plan.trivial.endings, &plan.trivial.ending_count, value);
        else if (strcmp(key, "trivial-record") == 0) {
            if (!strchr(value, '\n'))
                refuse_plan("bad trivial-record");
            push(&plan.trivial.records, &plan.trivial.record_count, value);
        } else if (strcmp(key, "record-json") == 0)
            plan.record_json = value;
        else if (strcmp(key, "record-text") == 0)
            plan.record_text = value;
        else if (strcmp(key, "silent") == 0) {
            if (strcmp(value, "0") != 0 && strcmp(value, "1") != 0)
                refuse_plan("bad silent");
            plan.silent = value[0] == '1';
        }
        /* state: phase 2's, carried unread. */
    }
}

/*
 * The payload's start never has the epilogue's rights (which allow uid 0): a plan that asks for
 * them is refused, whoever could have written it.
 */
static void refuse_epilogue_rights(void) {
    for (size_t i = 0; i < plan.helper_count && strcmp(plan.helper_argv[i], "--") != 0; i++)
        if (strcmp(plan.helper_argv[i], "--epilogue") == 0)
            refuse_plan("the payload's start asks for the epilogue's rights");
}

/* Moves `fd` above the descriptors a child sets up (0..4); the copy is closed on exec (monitor.h). */
int child_high_copy(int fd) {
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 10);
    if (copy < 0)
        _exit(EXIT_CANNOT_EXECUTE);
    return copy;
}

_Noreturn void child_cannot_start(int status_fd, const char *what) {
    /* If even this write fails, the exit code remains. */
    dprintf(status_fd, "system %s: %s\n", what, strerror(errno));
    _exit(EXIT_CANNOT_EXECUTE);
}

void child_close_from(unsigned first) {
    if (syscall(SYS_close_range, first, ~0U, 0U) != 0)
        child_cannot_start(3, "cannot close the monitor's descriptors");
}

/* For a start without clone3: start-payload's first option makes it join the payload's cgroup. */
static void join_by_helper(void) {
    static char join_arg[PATH_MAX + 32];
    int length = snprintf(join_arg, sizeof join_arg, "--cgroup-procs=%s/cgroup.procs", plan.cgroup);
    if (length < 0 || (size_t)length >= sizeof join_arg) {
        errno = ENAMETOOLONG;
        fail("the payload's cgroup path");
    }
    /* helper_argv[0] is start-payload's name; the option goes right after it. */
    push(&plan.helper_argv, &plan.helper_count, NULL);
    memmove(&plan.helper_argv[2], &plan.helper_argv[1], (plan.helper_count - 2) * sizeof *plan.helper_argv);
    plan.helper_argv[1] = join_arg;
}

/*
 * A child born in `cgroup` (clone3 with CLONE_INTO_CGROUP): no migration, so no fork of the
 * payload can happen outside it, and none of the RCU wait a move into a cgroup costs (10-18 ms).
 * Without a cgroup, a plain fork. -1 with errno on failure.
 */
static pid_t fork_into(const char *cgroup) {
    if (cgroup[0] == '\0')
        return fork();
    int directory = open(cgroup, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (directory < 0)
        return -1;
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = (unsigned long long)directory;
    pid_t pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
    if (pid != 0) {
        int error = errno;
        if (close(directory) != 0)
            fail("close");
        errno = error;
    }
    return pid;
}

/*
 * PRIVILEGE: starts the payload: a child, root, in the payload's cgroup and a new session (pid =
 * pgid = sid), with the caller's stderr on 2, its status pipe on 3 and the caller's directory on
 * 4, runs start-payload's steps (start_payload_run: limits, the target's identity, directory, exec). Returns its pid; `status` gets what it wrote on the status pipe (closed
 * at the payload's exec). A child that cannot be made in the cgroup is start-payload's "join"
 * failure (phase 2 reports it), with no pid.
 */
static pid_t start_payload(int cwd_fd, char *status, size_t status_size) {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0)
        fail("pipe2");
    pid_t pid = fork_into(plan.cgroup);
    if (pid < 0 && plan.cgroup[0] != '\0' && (errno == ENOSYS || errno == EPERM)) {
        /*
         * No clone3 here (a seccomp profile of some container runtimes refuses it): a plain fork,
         * and start-payload joins the cgroup itself before anything else (--cgroup-procs), as
         * before the monitor. The payload still starts inside it: nothing forks before the join.
         */
        join_by_helper();
        pid = fork();
    }
    if (pid < 0 && plan.cgroup[0] != '\0') {
        if (snprintf(status, status_size, "join cannot start in %s: %s\n", plan.cgroup, strerror(errno)) < 0)
            fail("snprintf");
        if (close(pipe_fds[0]) != 0 || close(pipe_fds[1]) != 0)
            fail("close");
        return 0;
    }
    if (pid < 0)
        fail("fork");
    /* From here the payload may run: a failure of the monitor must end it and record that. */
    if (pid > 0)
        payload_pid = pid;
    if (pid == 0) {
        int status_fd = child_high_copy(pipe_fds[1]);
        int stderr_fd = child_high_copy(caller_stderr);
        int directory = cwd_fd >= 0 ? child_high_copy(cwd_fd) : -1;
        /* Phase 2 reads this as start-payload's own failure. */
        if (setsid() < 0 || dup2(stderr_fd, 2) != 2 || dup2(status_fd, 3) != 3 ||
            (directory >= 0 && dup2(directory, 4) != 4))
            child_cannot_start(status_fd, "cannot set up the payload's start");
        child_close_from(directory >= 0 ? 5U : 4U);
        start_payload_run(plan.helper_argv, plan.env);
    }
    if (close(pipe_fds[1]) != 0)
        fail("close");
    read_helper_status(pipe_fds[0], status, status_size, -1);
    if (close(pipe_fds[0]) != 0)
        fail("close");
    return pid;
}

void read_helper_status(int fd, char *status, size_t size, long long deadline) {
    size_t used = 0;
    for (;;) {
        if (deadline >= 0) {
            long long left = deadline - monotonic_ms();
            if (left <= 0)
                break;
            struct pollfd readable = {.fd = fd, .events = POLLIN, .revents = 0};
            int ready = poll(&readable, 1, left > INT_MAX ? INT_MAX : (int)left);
            if (ready < 0 && errno != EINTR)
                fail("poll");
            if (ready <= 0)
                continue;
        }
        char chunk[512];
        ssize_t got = read(fd, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            fail("reading start-payload's status");
        if (got == 0)
            break;
        size_t keep = (size_t)got < size - 1 - used ? (size_t)got : size - 1 - used;
        memcpy(status + used, chunk, keep);
        used += keep;
    }
    status[used] = '\0';
}

static int is_forwarded(int sig) {
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        if (forwarded[i] == sig)
            return 1;
    return 0;
}

static void signal_payload(int sig) {
    if (kill(-payload_pid, sig) != 0 && errno != ESRCH)
        fail("cannot signal the payload");
}

/* Forwards every signal to the payload's group until it has ended; returns its wait status. */
static int wait_for_payload(const sigset_t *waited) {
    /* Signals that came while phase 1 worked are the payload's: delivered first. */
    sigset_t pending;
    if (sigemptyset(&pending) != 0)
        fail("sigemptyset");
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        if (sigaddset(&pending, forwarded[i]) != 0)
            fail("sigaddset");
    const struct timespec now = {0, 0};
    for (;;) {
        int sig = sigtimedwait(&pending, NULL, &now);
        if (sig < 0 && errno == EAGAIN)
            break;
        if (sig < 0 && errno != EINTR)
            fail("sigtimedwait");
        if (sig > 0)
            signal_payload(sig);
    }
    for (;;) {
        int status;
        pid_t done = waitpid(payload_pid, &status, WNOHANG);
        if (done == payload_pid) {
            payload_reaped = 1;
            return status;
        }
        if (done < 0 && errno != EINTR)
            fail("waitpid");
        int sig = sigwaitinfo(waited, NULL);
        if (sig < 0 && errno != EINTR)
            fail("sigwaitinfo");
        if (sig > 0 && is_forwarded(sig))
            signal_payload(sig);
    }
}

/*
 * PRIVILEGE: runs node (phase 1 or 2) as a child, with the plan's memory file as its own descriptor
 * and, for phase 2, the write end of the pipe on which it says "record written" (`done_fd`, else
 * -1). The child dies with the monitor (PR_SET_PDEATHSIG), so no root phase outlives it and none
 * ever talks to a process that adopted it.
 */
static pid_t start_phase(char **node_argv, size_t slot, char *const node_env[], const char *phase, int plan_fd,
                         int done_fd) {
    static char phase_arg[32], plan_arg[32], done_arg[32];
    if (snprintf(phase_arg, sizeof phase_arg, "--phase=%s", phase) < 0 ||
        snprintf(plan_arg, sizeof plan_arg, "--plan-fd=%d", plan_fd) < 0 ||
        (done_fd >= 0 ? snprintf(done_arg, sizeof done_arg, "--done-fd=%d", done_fd)
                      : snprintf(done_arg, sizeof done_arg, "--done-fd=none")) < 0)
        fail("snprintf");
    node_argv[slot] = phase_arg;
    node_argv[slot + 1] = plan_arg;
    node_argv[slot + 2] = done_arg;
    pid_t monitor = getpid();
    pid_t pid = fork();
    if (pid < 0)
        fail("fork");
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || getppid() != monitor)
            _exit(EXIT_SYSTEM_ERROR);
        if (fcntl(plan_fd, F_SETFD, 0) != 0 || (done_fd >= 0 && fcntl(done_fd, F_SETFD, 0) != 0))
            _exit(EXIT_SYSTEM_ERROR);
        execve(GLEXEC_NODE, node_argv, node_env);
        say("cannot execute " GLEXEC_NODE ": %s", strerror(errno));
        _exit(EXIT_SYSTEM_ERROR);
    }
    return pid;
}

static int new_memfd(const char *name) {
    int fd = (int)syscall(SYS_memfd_create, name, 1U /* MFD_CLOEXEC */);
    if (fd < 0)
        fail("memfd_create");
    return fd;
}

static int wait_for_child(pid_t pid) {
    int status;
    while (waitpid(pid, &status, 0) != pid)
        if (errno != EINTR)
            fail("waitpid");
    return status;
}

/*
 * The minimal completion record, when phase 2 could not write its own: the fields phase 1
 * prepared, with what the monitor knows. Appended to the log file, else sent to syslog.
 */
static void write_minimal_record(const char *error, const char *cleanup) {
    char time_text[64] = "";
    struct timespec now;
    struct tm utc;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0 || !gmtime_r(&now.tv_sec, &utc) ||
        strftime(time_text, sizeof time_text, "%Y-%m-%dT%H:%M:%S", &utc) == 0)
        fail("the time of the record");
    const char *file = plan.record_file ? plan.record_file : "";
    const char *json = plan.record_json ? plan.record_json : "";
    const char *text = plan.record_text ? plan.record_text : "";
    if (file[0] == '/') {
        int fd = open(file, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd >= 0) {
            int written = dprintf(fd,
                                  "{\"level\":\"notice\",\"time\":\"%s.%03ldZ\",\"pid\":%d,\"msg\":\"job completed\",%s%s"
                                  "\"glexecPid\":%d,\"payloadPid\":%d,\"cleanup\":\"%s\",\"error\":\"%s\",\"exitCode\":%d}\n",
                                  time_text, now.tv_nsec / 1000000, (int)getpid(), json, json[0] ? "," : "",
                                  (int)getpid(), (int)payload_pid, cleanup, error, EXIT_SYSTEM_ERROR);
            if (close(fd) == 0 && written > 0)
                return;
        }
    }
    openlog("glexec", LOG_PID | LOG_NDELAY, plan.record_facility ? plan.record_facility : LOG_DAEMON);
    syslog(LOG_NOTICE, "job completed %s%sglexecPid=%d payloadPid=%d cleanup=%s error=%s exitCode=%d", text,
           text[0] ? " " : "", (int)getpid(), (int)payload_pid, cleanup, error, EXIT_SYSTEM_ERROR);
    closelog();
}

/* The empty leftover list the monitor made for its epilogue: removed once the epilogue ran, or failed to start. */
static void remove_leftover_file(void) {
    char *path = plan.epilogue.leftover_path;
    if (plan.epilogue.leftover_made && path && unlink(path) != 0 && errno != ENOENT)
        say("cannot remove %s: %s", path, strerror(errno));
    plan.epilogue.leftover_made = 0;
}

/*
 * PRIVILEGE: ends everything of the payload at once, then records it: its cgroup by cgroup.kill
 * (gone already: phase 2 removed it, nothing is left), and its process group while the payload is
 * not reaped (its id cannot be anyone else's then). Without a cgroup, what left the group after
 * the payload ended is not reached.
 */
static void emergency_end(const char *error) {
    ending = 1;
    remove_leftover_file();
    const char *cleanup = "none";
    if (plan.cgroup && plan.cgroup[0] == '/') {
        char path[PATH_MAX];
        int length = snprintf(path, sizeof path, "%s/cgroup.kill", plan.cgroup);
        int fd = length > 0 && (size_t)length < sizeof path ? open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
        if (fd >= 0 && write(fd, "1", 1) == 1)
            cleanup = "killed";
        else if (errno != ENOENT) {
            cleanup = "failed";
            say("cannot kill the payload's cgroup %s: %s", plan.cgroup, strerror(errno));
        }
        if (fd >= 0 && close(fd) != 0)
            say("close: %s", strerror(errno));
    }
    if (payload_pid > 0 && !payload_reaped) {
        if (kill(-payload_pid, SIGKILL) == 0)
            cleanup = "killed";
        else if (errno != ESRCH)
            say("cannot kill the payload's process group: %s", strerror(errno));
    }
    write_minimal_record(error, cleanup);
}

/*
 * Phase 2 runs until it exits; signals meanwhile are dropped. Its one byte on the "done" pipe
 * (read end `done_read`, non-blocking) says its record is written: a pipe only the monitor and
 * phase 2 hold, so nothing else can say it or hide it, whatever the caller's RLIMIT_SIGPENDING.
 */
static int wait_for_conclusion(pid_t phase, const sigset_t *waited, int done_read, int *done) {
    for (;;) {
        int status;
        pid_t ended = waitpid(phase, &status, WNOHANG);
        if (ended == phase) {
            char byte;
            ssize_t got;
            do
                got = read(done_read, &byte, 1);
            while (got < 0 && errno == EINTR);
            if (got < 0 && errno != EAGAIN)
                fail("read");
            *done = got == 1 && byte == 'd';
            return status;
        }
        if (ended < 0 && errno != EINTR)
            fail("waitpid");
        if (sigwaitinfo(waited, NULL) < 0 && errno != EINTR)
            fail("sigwaitinfo");
    }
}

_Noreturn void monitor_run(char **node_argv, size_t slot, char *const node_env[], int stderr_fd, int cwd_fd,
                           const int decide_only[2]) {
    caller_stderr = stderr_fd;
    long long started = monotonic_ms();
    sigset_t waited;
    if (sigfillset(&waited) != 0)
        fail("sigfillset");

    /* Phase 1: decide. */
    int plan_fd = new_memfd("glexec-plan");
    int status = wait_for_child(start_phase(node_argv, slot, node_env, "decide", plan_fd, -1));
    size_t length;
    char *data = read_memfd(plan_fd, &length);
    if (close(plan_fd) != 0)
        fail("close");
    /* The caller's environment and proxy were phase 1's: neither the payload's start nor phase 2 gets them. */
    for (int i = 0; i < 2; i++)
        if (decide_only[i] >= 0 && close(decide_only[i]) != 0)
            fail("close");
    if (length == 0) {
        /* Nothing to run: a refusal, -v, --check, a renewal; phase 1 has said what to say. */
        if (WIFEXITED(status))
            exit(WEXITSTATUS(status));
        errno = 0;
        say("internal error: the decision phase ended by signal %d; nothing was run", WTERMSIG(status));
        exit(EXIT_SYSTEM_ERROR);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        refuse_plan("the decision phase did not finish");
    /* The record handed to phase 2 starts as the plan without its end. */
    int record_fd = new_memfd("glexec-record");
    char *copy = malloc(length);
    if (!copy)
        fail("out of memory");
    memcpy(copy, data, length);
    size_t body = parse_plan(data, length);
    refuse_epilogue_rights();
    write_all(record_fd, copy, body);
    free(copy);

    /* The payload. */
    char helper_status[STATUS_MAX];
    long long payload_started = monotonic_ms();
    payload_pid = start_payload(cwd_fd, helper_status, sizeof helper_status);
    if (cwd_fd >= 0 && close(cwd_fd) != 0)
        fail("close");
    /* Not started: start-payload's exit code, as if it had failed to join the cgroup itself. */
    int payload_status = payload_pid > 0 ? wait_for_payload(&waited) : EXIT_CANNOT_EXECUTE << 8;
    long long payload_ended = monotonic_ms();

    struct epilogue_run epilogue_run;
    int epilogue_ran = 0;
    if (payload_pid > 0) {
        struct run_end end = {plan.cgroup,     plan.record_file, plan.record_facility, payload_pid, helper_status,
                              payload_status, started,          payload_started,      payload_ended, -1};
        /* The epilogue, when the payload left nothing and its trust walk still holds; else phase 2 runs it. */
        int payload_rc;
        if (plan.epilogue.timeout_ms >= 0 && trivial_ready(&plan.trivial, &end, &payload_rc) &&
            epilogue_watch_unchanged(&plan.epilogue) && make_leftover_list(&plan.epilogue)) {
            run_epilogue(&plan.epilogue, payload_pid, payload_rc, &epilogue_run);
            epilogue_ran = 1;
            end.epilogue_ms = epilogue_run.duration_ms;
        }
        /* What the epilogue left may still read the list: phase 2 removes it once it has ended them. */
        if (!(epilogue_ran && epilogue_run.group_left))
            remove_leftover_file();
        /* Then create_target_proxy's copy, as phase 2 removes it once the epilogue has run. */
        if ((plan.epilogue.timeout_ms < 0 || (epilogue_ran && epilogue_succeeded(&epilogue_run))) &&
            (!plan.proxy_copy.present || (trivial_ready(&plan.trivial, &end, &payload_rc) && remove_proxy_copy(&plan.proxy_copy)))) {
            int code = conclude_trivially(&plan.trivial, &end);
            if (code >= 0)
                exit(code);
        }
    }
    if (!(epilogue_ran && epilogue_run.group_left))
        remove_leftover_file();
    /* Phase 2: conclude, with the outcome appended to the plan. */
    write_number_field(record_fd, "glexec-pid", getpid());
    write_number_field(record_fd, "payload-pid", payload_pid);
    write_number_field(record_fd, "wait-status", payload_status);
    write_field(record_fd, "helper-status", helper_status, strlen(helper_status));
    write_number_field(record_fd, "started-ms", started);
    write_number_field(record_fd, "payload-started-ms", payload_started);
    write_number_field(record_fd, "payload-ended-ms", payload_ended);
    if (epilogue_ran) {
        char line[128];
        int length = snprintf(line, sizeof line, "%d %d %d %lld %d", (int)epilogue_run.pid, epilogue_run.wait_status,
                              epilogue_run.ended_by, epilogue_run.duration_ms, epilogue_run.group_left);
        if (length < 0 || (size_t)length >= sizeof line)
            fail("snprintf");
        write_field(record_fd, "epilogue-run", line, (size_t)length);
        write_field(record_fd, "epilogue-helper-status", epilogue_run.helper_status, strlen(epilogue_run.helper_status));
    }
    write_all(record_fd, PLAN_END, strlen(PLAN_END));
    if (lseek(record_fd, 0, SEEK_SET) != 0)
        fail("lseek");
    int done_pipe[2];
    if (pipe2(done_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        fail("pipe2");
    pid_t conclusion = start_phase(node_argv, slot, node_env, "conclude", record_fd, done_pipe[1]);
    if (close(done_pipe[1]) != 0 || close(record_fd) != 0)
        fail("close");
    int done = 0;
    status = wait_for_conclusion(conclusion, &waited, done_pipe[0], &done);
    if (done && WIFEXITED(status))
        exit(WEXITSTATUS(status));
    errno = 0;
    if (WIFSIGNALED(status))
        say("internal error: the concluding phase ended by signal %d; the payload was killed", WTERMSIG(status));
    else
        say("internal error: the concluding phase exited %d without its record; the payload was killed",
            WEXITSTATUS(status));
    emergency_end("monitor.conclusion_failed");
    exit(EXIT_SYSTEM_ERROR);
}
