/*
 * glexec setuid shim: the only code that runs with the caller's uid and root's euid at once.
 *
 * It does as little as it can, in this order:
 *   0. block every signal (they stay pending until Node sets its own mask) and disarm the
 *      caller's interval timers, so nothing can end the shim half-way;
 *   1. refuse unless the effective uid is 0 (installed setuid root, or run by root);
 *   2. make sure fds 0-2 are open (on /dev/null), so no file glexec opens can become stdio;
 *   3. record the caller's real uid, gid, supplementary groups and working directory;
 *   4. close every other inherited fd, then copy the caller's environment into a memfd, as data,
 *      and open, with the caller's own ids (root never opens them), its working directory
 *      (O_PATH, so the payload enters the very directory the caller was in) and its proxy file
 *      (a relative name is taken in that directory);
 *   5. become fully root (groups, gid, uid), so no caller signal reaches the process;
 *   6. drop the process state a caller could leave for root: timer slack, oom_score_adj,
 *      signal dispositions; umask 022, cwd /; lift the resource limits a
 *      caller could use to make the root process fail half-way (after the payload started, before
 *      its completion record is written) or refuse to run, no core files, and pass the caller's
 *      values on for the payload;
 *   7. move the caller's stderr off descriptor 2 (Node's own C++ messages go to /dev/null) and
 *      become the monitor (monitor.c), which runs the node and the program fixed at build time
 *      twice, as its children (decide, then conclude), with a fixed environment and an
 *      inspector address that can never be bound, so a SIGUSR1 before glexec's own handler is
 *      in place cannot open a root inspector; between them it starts and waits for the payload.
 *
 * Paths are compiled in (-D), so no caller input can choose the interpreter, the program or the
 * configuration file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "monitor.h"

#ifndef GLEXEC_CONFIG_FILE
#error "GLEXEC_CONFIG_FILE must be defined at build time"
#endif
#ifndef GLEXEC_NODE
#error "GLEXEC_NODE must be defined at build time"
#endif
#ifndef GLEXEC_PROGRAM
#error "GLEXEC_PROGRAM must be defined at build time"
#endif

extern char **environ;

/* Exit code of gLExec for a system error: the site must fix something. */
#define EXIT_SYSTEM_ERROR 202
/* Caller argument count is bounded by the kernel anyway; this bounds our own argv. */
#define MAX_ARGS 65536
/*
 * Node 20 starts its inspector on SIGUSR1 until a JS listener replaces that handler (after the
 * bundle loaded), and has no option to turn this off. It binds the host given here: ::1 with a
 * non-numeric scope, which glibc's getaddrinfo refuses as EAI_NONAME while parsing (the scope of
 * a loopback address is never looked up as an interface name), without reading a file or asking
 * DNS. No configuration of the machine can make it resolve, so the inspector can never listen.
 */
#define INSPECTOR_NEVER "--inspect-port=[::1%glexec-no-inspector]"
/* The kernel's default timer slack (50 us); PR_SET_TIMERSLACK 0 would restore the caller's. */
#define DEFAULT_TIMER_SLACK_NS 50000UL
/*
 * glexec's oom_score_adj: below the payload's 0, so the OOM killer takes the payload (which gets 0
 * back) before the root process that must write its record. Lowering needs CAP_SYS_RESOURCE;
 * without it glexec takes 0, the lowest it may, and never keeps a caller's higher value.
 */
#define GLEXEC_OOM_SCORE_ADJ "-500"
#define PAYLOAD_OOM_SCORE_ADJ "0"

/* Where the caller's stderr is: 2 until move_caller_stderr() moves it. */
static int caller_stderr = 2;

static void die(const char *what) {
    /* stderr is open (step 2 runs first); one line, gLExec style. A failed write leaves only the
     * exit code to tell the caller, which it gets anyway. */
    int written;
    if (errno)
        written = dprintf(caller_stderr, "glexec: %s: %s\n", what, strerror(errno));
    else
        written = dprintf(caller_stderr, "glexec: %s\n", what);
    (void)written;
    exit(EXIT_SYSTEM_ERROR);
}

static void open_std_fds(void) {
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) == -1) {
            if (errno != EBADF)
                die("cannot inspect a standard descriptor");
            int null_fd = open("/dev/null", O_RDWR);
            if (null_fd != fd) {
                errno = 0;
                die("cannot open /dev/null on a closed standard descriptor");
            }
        }
    }
}

static char *format_groups(void) {
    int count = getgroups(0, NULL);
    if (count < 0)
        die("getgroups");
    gid_t *groups = calloc((size_t)count + 1, sizeof(gid_t));
    if (!groups)
        die("out of memory");
    count = getgroups(count, groups);
    if (count < 0)
        die("getgroups");
    /* Up to 10 digits and a comma per group. */
    char *text = calloc((size_t)count * 11 + 1, 1);
    if (!text)
        die("out of memory");
    size_t used = 0;
    for (int i = 0; i < count; i++)
        used += (size_t)sprintf(text + used, i ? ",%u" : "%u", (unsigned)groups[i]);
    free(groups);
    return text;
}

/* The caller's environment, NUL separated, in an anonymous memory file; returns its fd. */
static int environment_to_memfd(void) {
    int fd = (int)syscall(SYS_memfd_create, "glexec-caller-env", 0);
    if (fd < 0)
        die("memfd_create");
    for (char **entry = environ; *entry; entry++) {
        size_t length = strlen(*entry) + 1; /* with its NUL */
        const char *cursor = *entry;
        while (length > 0) {
            ssize_t written = write(fd, cursor, length);
            if (written < 0) {
                if (errno == EINTR)
                    continue;
                die("writing the caller environment");
            }
            cursor += written;
            length -= (size_t)written;
        }
    }
    if (lseek(fd, 0, SEEK_SET) != 0)
        die("lseek");
    return fd;
}

/*
 * Opens the caller's proxy (GLEXEC_CLIENT_CERT, else X509_USER_PROXY) with the caller's own
 * effective ids and groups, so that root never opens a file the caller names: the kernel checks
 * access as the caller, a FIFO cannot block (O_NONBLOCK), a symlink is not followed. Node makes
 * every other check on the descriptor. Returns the descriptor, or -1 with the errno in *error;
 * -1 with *error 0 when there is nothing to open (Node reports why).
 */
static int open_proxy_as_caller(int cwd_fd, int *error) {
    const char *path = getenv("GLEXEC_CLIENT_CERT");
    if (path == NULL)
        path = getenv("X509_USER_PROXY");
    *error = 0;
    if (path == NULL || path[0] == '\0')
        return -1;
    /* A relative name is the caller's own, in its working directory (gLite's x509up_u<uid>_<n>). */
    if (path[0] != '/' && cwd_fd < 0) {
        *error = ENOENT;
        return -1;
    }
    int fd = openat(path[0] == '/' ? AT_FDCWD : cwd_fd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    *error = fd < 0 ? errno : 0;
    return fd;
}

/*
 * The caller's working directory itself ("." is not a path that could be swapped), as a handle
 * only (O_PATH: no read access is needed or given); the payload enters it with fchdir, as the
 * target. -1 when the caller's cwd cannot be opened.
 */
static int open_cwd_as_caller(void) {
    return open(".", O_PATH | O_DIRECTORY);
}

static void as_caller(uid_t uid, gid_t gid) {
    if (setegid(gid) != 0 || seteuid(uid) != 0)
        die("cannot take the caller's identity to open its files");
}

static void back_to_root(void) {
    if (seteuid(0) != 0 || setegid(0) != 0)
        die("cannot return to root after opening the caller's files");
}

static void become_root(void) {
    if (setgroups(0, NULL) != 0)
        die("setgroups");
    if (setresgid(0, 0, 0) != 0)
        die("setresgid");
    if (setresuid(0, 0, 0) != 0)
        die("setresuid");
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0 ||
        ruid || euid || suid || rgid || egid || sgid) {
        errno = 0;
        die("could not become root");
    }
}

/*
 * Limits a caller could set to make glexec fail half-way: no CPU time left, no file growth
 * (the log), no memory, no descriptors. glexec lifts them for itself; the caller's values travel
 * to the payload, which gets them back (prlimit, in the Node program).
 */
static const struct {
    int resource;
    const char *name;
} lifted_limits[] = {
    {RLIMIT_CPU, "cpu"}, {RLIMIT_FSIZE, "fsize"}, {RLIMIT_AS, "as"}, {RLIMIT_DATA, "data"}, {RLIMIT_NOFILE, "nofile"},
    {RLIMIT_CORE, "core"}, {RLIMIT_STACK, "stack"},
};
#define LIFTED_COUNT (sizeof lifted_limits / sizeof lifted_limits[0])
/* Enough descriptors for glexec itself, whatever the caller left. */
#define MIN_NOFILE 1024
/* Enough stack for Node (its default), and not unlimited, which would also change the mmap layout. */
#define MIN_STACK (8UL * 1024 * 1024)

static void format_limit(char *out, size_t size, rlim_t value) {
    if (value == RLIM_INFINITY)
        snprintf(out, size, "unlimited");
    else
        snprintf(out, size, "%llu", (unsigned long long)value);
}

/* "cpu=S:H,fsize=S:H,…" of the caller's limits. */
static char *format_caller_limits(void) {
    static char text[LIFTED_COUNT * 64];
    size_t used = 0;
    for (size_t i = 0; i < LIFTED_COUNT; i++) {
        struct rlimit limit;
        if (getrlimit(lifted_limits[i].resource, &limit) != 0)
            die("getrlimit");
        char soft[32], hard[32];
        format_limit(soft, sizeof soft, limit.rlim_cur);
        format_limit(hard, sizeof hard, limit.rlim_max);
        used += (size_t)snprintf(text + used, sizeof text - used, "%s%s=%s:%s", i ? "," : "", lifted_limits[i].name, soft, hard);
    }
    return text;
}

/*
 * glexec runs with no CPU, file-size or memory limit and at least MIN_NOFILE descriptors. A
 * caller's hard limit below that can only be raised with CAP_SYS_RESOURCE; without it glexec
 * refuses to run (202) rather than run with a limit that could stop it half-way. And no core
 * files: a root process's memory holds other users' data (the soft limit only, so that the
 * payload can get the caller's back).
 */
static void lift_limits(void) {
    for (size_t i = 0; i < LIFTED_COUNT; i++) {
        int resource = lifted_limits[i].resource;
        struct rlimit wanted = {RLIM_INFINITY, RLIM_INFINITY};
        if (resource == RLIMIT_NOFILE || resource == RLIMIT_CORE || resource == RLIMIT_STACK) {
            if (getrlimit(resource, &wanted) != 0)
                die("getrlimit");
            if (resource == RLIMIT_CORE) {
                wanted.rlim_cur = 0;
            } else {
                rlim_t minimum = resource == RLIMIT_NOFILE ? MIN_NOFILE : MIN_STACK;
                if (wanted.rlim_max < minimum)
                    wanted.rlim_max = minimum;
                /* The stack gets exactly the minimum: what Node expects, whatever the caller chose. */
                if (wanted.rlim_cur < minimum || resource == RLIMIT_STACK)
                    wanted.rlim_cur = minimum;
            }
        }
        if (setrlimit(resource, &wanted) != 0) {
            static char message[160];
            snprintf(message, sizeof message, "the caller's hard %s limit cannot be lifted (that needs CAP_SYS_RESOURCE)", lifted_limits[i].name);
            die(message);
        }
    }
}

/*
 * Every signal stays pending while the shim works (a root SIGUSR1 here would otherwise end it);
 * Node sets its own mask at start-up, and a pending SIGUSR1 then meets Node's inspector handler,
 * which cannot bind (INSPECTOR_NEVER).
 */
static void block_signals(void) {
    sigset_t all;
    if (sigfillset(&all) != 0 || sigprocmask(SIG_SETMASK, &all, NULL) != 0)
        die("sigprocmask");
}

static void reset_signals(void) {
    /* An ignored disposition survives exec; the caller must not choose ours. */
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        /* glibc keeps two RT signals for itself (NPTL) and refuses them: nothing to reset there. */
        if (signal(sig, SIG_DFL) == SIG_ERR && !(errno == EINVAL && sig >= 32 && sig < SIGRTMIN))
            die("signal");
    }
}

/*
 * Process state that survives the setuid exec and that the caller chose: armed interval timers
 * (SIGALRM, SIGVTALRM, SIGPROF would end glexec without a record), its timer slack (which
 * stretches every timeout of glexec), and its oom_score_adj (which makes the OOM killer pick
 * root glexec first).
 */
static void disarm_interval_timers(void) {
    static const int timers[] = {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF};
    struct itimerval disarmed;
    memset(&disarmed, 0, sizeof disarmed);
    for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++)
        if (setitimer(timers[i], &disarmed, NULL) != 0)
            die("setitimer");
}

static void drop_caller_process_state(void) {
    if (prctl(PR_SET_TIMERSLACK, DEFAULT_TIMER_SLACK_NS, 0, 0, 0) != 0)
        die("prctl(PR_SET_TIMERSLACK)");
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        die("cannot open /proc/self/oom_score_adj");
    const char *value = GLEXEC_OOM_SCORE_ADJ;
    ssize_t written = write(fd, value, strlen(value));
    if (written < 0 && errno == EACCES) {
        value = PAYLOAD_OOM_SCORE_ADJ;
        written = write(fd, value, strlen(value));
    }
    if (written != (ssize_t)strlen(value))
        die("cannot set glexec's oom_score_adj");
    if (close(fd) != 0)
        die("close");
}

/*
 * Node prints the failed inspector start (and any fatal message of its own) on descriptor 2:
 * that must not reach the caller. The caller's stderr moves to a descriptor of its own, which
 * glexec writes its messages to and gives the payload as its stderr; 2 becomes /dev/null.
 */
static int move_caller_stderr(void) {
    int moved = fcntl(2, F_DUPFD, 3);
    if (moved < 0)
        die("cannot keep the caller's stderr");
    int null_fd = open("/dev/null", O_WRONLY);
    if (null_fd < 0)
        die("cannot open /dev/null");
    if (dup2(null_fd, 2) != 2)
        die("dup2");
    if (close(null_fd) != 0)
        die("close");
    caller_stderr = moved;
    return moved;
}

int main(int argc, char **argv) {
    /* First: no signal and no armed timer may end the shim half-way. */
    block_signals();
    disarm_interval_timers();
    open_std_fds();
    if (geteuid() != 0) {
        errno = 0;
        die("not installed setuid root; ask the site administrator to run install-system");
    }
    if (argc < 1) {
        errno = 0;
        die("started without a program name (argc is 0); run it as glexec [options] payload [args]");
    }
    if (argc > MAX_ARGS) {
        errno = 0;
        die("too many arguments");
    }

    uid_t caller_uid = getuid();
    gid_t caller_gid = getgid();
    char *caller_groups = format_groups();
    char *caller_limits = format_caller_limits();
    char caller_cwd[PATH_MAX];
    if (!getcwd(caller_cwd, sizeof caller_cwd))
        caller_cwd[0] = '\0';

    /* Caller fds other than stdio never reach the root process or the payload. */
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
        die("close_range");
    int env_fd = environment_to_memfd();
    as_caller(caller_uid, caller_gid);
    int cwd_fd = open_cwd_as_caller();
    int proxy_error;
    int proxy_fd = open_proxy_as_caller(cwd_fd, &proxy_error);
    back_to_root();

    become_root();
    lift_limits();
    drop_caller_process_state();
    reset_signals();
    umask(022);
    if (chdir("/") != 0)
        die("chdir /");
    int stderr_fd = move_caller_stderr();

    static char uid_arg[64], gid_arg[64], env_arg[64], proxy_arg[64], cwd_fd_arg[64], stderr_arg[64];
    snprintf(cwd_fd_arg, sizeof cwd_fd_arg, "--caller-cwd-fd=%d", cwd_fd);
    snprintf(stderr_arg, sizeof stderr_arg, "--caller-stderr-fd=%d", stderr_fd);
    snprintf(uid_arg, sizeof uid_arg, "--caller-uid=%u", (unsigned)caller_uid);
    snprintf(gid_arg, sizeof gid_arg, "--caller-gid=%u", (unsigned)caller_gid);
    snprintf(env_arg, sizeof env_arg, "--caller-env-fd=%d", env_fd);
    if (proxy_fd >= 0)
        snprintf(proxy_arg, sizeof proxy_arg, "--caller-proxy-fd=%d", proxy_fd);
    else
        snprintf(proxy_arg, sizeof proxy_arg, "--caller-proxy-errno=%d", proxy_error);
    char *groups_arg = NULL, *cwd_arg = NULL, *limits_arg = NULL;
    if (asprintf(&groups_arg, "--caller-groups=%s", caller_groups) < 0 ||
        asprintf(&limits_arg, "--caller-rlimits=%s", caller_limits) < 0 ||
        asprintf(&cwd_arg, "--caller-cwd=%s", caller_cwd) < 0)
        die("out of memory");

    const char *fixed[] = {
        GLEXEC_NODE,
        INSPECTOR_NEVER,
        "--v8-pool-size=0",
        GLEXEC_PROGRAM,
        "--config=" GLEXEC_CONFIG_FILE,
        uid_arg,
        gid_arg,
        groups_arg,
        cwd_arg,
        cwd_fd_arg,
        stderr_arg,
        limits_arg,
        env_arg,
        proxy_arg,
        "--phase=",   /* the monitor's slots: which phase, its plan descriptor, its "done" pipe */
        "--plan-fd=",
        "--done-fd=",
        "--",
    };
    size_t fixed_count = sizeof fixed / sizeof fixed[0];
    char **node_argv = calloc(fixed_count + (size_t)argc, sizeof(char *));
    if (!node_argv)
        die("out of memory");
    for (size_t i = 0; i < fixed_count; i++)
        node_argv[i] = (char *)fixed[i];
    /* The caller's arguments (without argv[0]) follow "--" unchanged. */
    for (int i = 1; i < argc; i++)
        node_argv[fixed_count + (size_t)i - 1] = argv[i];
    node_argv[fixed_count + (size_t)argc - 1] = NULL;

    char *node_env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    /* From here the shim is the monitor: the glexec process for the whole run. */
    const int decide_only[2] = {env_fd, proxy_fd};
    monitor_run(node_argv, fixed_count - 4, node_env, stderr_fd, cwd_fd, decide_only);
}
