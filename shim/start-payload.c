/*
 * glexec's start of the payload, and of the epilogue (--epilogue), in two builds of this file:
 * - linked into the shim (START_PAYLOAD_IN_MONITOR): the monitor (shim/monitor.c, epilogue.c)
 *   calls start_payload_run in the child it forked for the payload or its epilogue, which then
 *   execs the program itself: no exec of a helper in between (one exec fewer a start, 3-4 ms);
 * - the program start-payload, for phase 2's epilogue (src/sys/proc.ts): installed root-only,
 *   0700, and linked statically, so no loader variable of the payload's environment is ever read
 *   while it is root.
 * Either way the process keeps its pid, so the payload is the process glexec started.
 * In this order, every call checked:
 *   0. take the stack and the group list the steps need while glexec's own limits hold (the
 *      monitor's child runs on the monitor's stack, not on a new one an exec gave it);
 *   1. join the payload's cgroup(s), so the payload is born there and no fork of it escapes;
 *   2. give the payload the caller's resource limits and oom_score_adj 0, default signal
 *      dispositions and an empty signal mask;
 *   3. clear the ambient and inheritable capabilities, then set the groups, then the gid, then
 *      the uid (real, effective, saved: the kernel then clears the permitted and effective sets),
 *      and no_new_privs when asked;
 *   4. as the target: enter the caller's working directory through the descriptor the shim
 *      opened (no path is resolved again), else the target's home, else /;
 *   5. exec the payload (with prohibit_exec_via_symlink, by execveat with AT_SYMLINK_NOFOLLOW: the
 *      kernel refuses a symlink at the very moment of the exec, and a script still gets its path
 *      as $0).
 *
 * Descriptor 3 is glexec's status pipe, closed on exec: before the exec it gets "cwd PATH" (the
 * directory really entered); on a failure one more line, "join|system|exec|symlink MESSAGE",
 * and the helper exits 126. So glexec tells its own failures (202) from the payload's exec
 * failure (126) and from the payload's exit code.
 *
 * Usage (built by glexec, never by a user):
 *   start-payload [--cgroup-procs=PATH]... [--rlimit=NAME=SOFT:HARD]... --uid=N --gid=N
 *     --groups=G,G,... [--no-new-privs] [--cwd-fd=N] [--home=PATH] [--no-symlink] [--epilogue]
 *     -- PROGRAM [ARG]...
 * --epilogue: the site's epilogue, which may run as root (epilogue_user); a payload never can.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "start-payload.h"

#define EXIT_CANNOT_EXECUTE 126
#define STATUS_FD 3
#define MAX_GROUPS 65536
#define MAX_CGROUPS 8
#define MAX_LIMITS 16

static void report(const char *kind, const char *format, ...) {
    char raw[PATH_MAX + 512];
    va_list args;
    va_start(args, format);
    int length = vsnprintf(raw, sizeof raw, format, args);
    va_end(args);
    if (length < 0)
        return;
    if ((size_t)length >= sizeof raw)
        length = (int)sizeof raw - 1;
    /*
     * One line per report, whatever the text holds: a path of the caller's may contain a newline,
     * which must not read as a second line of status. Control bytes and backslashes are written
     * as \xHH (src/sys/proc.ts decodes them).
     */
    /* Static, not on the stack: the steps after the caller's limits run within a small reserve (reserve_stack). */
    static char line[32 + 4 * sizeof raw + 2];
    int used = snprintf(line, sizeof line, "%s ", kind);
    if (used < 0 || (size_t)used >= 32)
        return;
    for (int i = 0; i < length; i++) {
        unsigned char byte = (unsigned char)raw[i];
        if (byte < 0x20 || byte == 0x7f || byte == '\\')
            used += snprintf(line + used, sizeof line - (size_t)used, "\\x%02x", byte);
        else
            line[used++] = (char)byte;
    }
    line[used++] = '\n';
    /* Without the status pipe, stderr is the last place left; nothing remains if that fails too. */
    if (write(STATUS_FD, line, (size_t)used) != used && dprintf(2, "glexec start-payload: %.*s", used, line) < 0)
        return;
}

/* A failure of glexec's own setup (202 in glexec). */
static void fail(const char *kind, const char *what) {
    report(kind, "%s: %s", what, strerror(errno));
    _exit(EXIT_CANNOT_EXECUTE);
}

static void usage(const char *why) {
    errno = EINVAL;
    fail("system", why);
}

static unsigned long parse_number(const char *text, unsigned long max) {
    char *end;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno || end == text || *end || value > max || text[0] == '-')
        usage("bad number in the arguments");
    return value;
}

static const struct {
    const char *name;
    int resource;
} limit_names[] = {
    {"cpu", RLIMIT_CPU},   {"fsize", RLIMIT_FSIZE},   {"as", RLIMIT_AS},       {"data", RLIMIT_DATA},
    {"nofile", RLIMIT_NOFILE}, {"core", RLIMIT_CORE}, {"stack", RLIMIT_STACK},
};

static rlim_t parse_limit_value(const char *text) {
    if (strcmp(text, "unlimited") == 0)
        return RLIM_INFINITY;
    return (rlim_t)parse_number(text, ULONG_MAX - 1);
}

/* "name=soft:hard" */
static void set_limit(char *spec) {
    char *equals = strchr(spec, '=');
    char *colon = equals ? strchr(equals, ':') : NULL;
    if (!equals || !colon)
        usage("bad --rlimit");
    *equals = '\0';
    *colon = '\0';
    for (size_t i = 0; i < sizeof limit_names / sizeof limit_names[0]; i++) {
        if (strcmp(spec, limit_names[i].name) != 0)
            continue;
        struct rlimit limit = {parse_limit_value(equals + 1), parse_limit_value(colon + 1)};
        if (setrlimit(limit_names[i].resource, &limit) != 0)
            fail("system", "cannot give the payload the caller's resource limits");
        return;
    }
    usage("unknown resource in --rlimit");
}

static void join_cgroup(const char *procs) {
    char pid[32];
    int length = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    int fd = open(procs, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        report("join", "cannot open %s: %s", procs, strerror(errno));
        _exit(EXIT_CANNOT_EXECUTE);
    }
    if (write(fd, pid, (size_t)length) != length) {
        report("join", "cannot join %s: %s", procs, strerror(errno));
        _exit(EXIT_CANNOT_EXECUTE);
    }
    if (close(fd) != 0)
        fail("join", "close");
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        fail("system", path);
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        fail("system", path);
    if (close(fd) != 0)
        fail("system", "close");
}

static void default_signals(void) {
    sigset_t none;
    if (sigemptyset(&none) != 0 || sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        fail("system", "sigprocmask");
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        /* glibc refuses the RT signals it keeps for itself: they are not the payload's. */
        if (signal(sig, SIG_DFL) == SIG_ERR && !(errno == EINVAL && sig >= 32 && sig < SIGRTMIN))
            fail("system", "signal");
    }
}

/* No capability can come back through the inheritable or ambient sets after the switch. */
static void clear_inheritable_capabilities(void) {
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        fail("system", "cannot clear the ambient capabilities");
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &header, data) != 0)
        fail("system", "capget");
    for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
        data[i].inheritable = 0;
    if (syscall(SYS_capset, &header, data) != 0)
        fail("system", "cannot clear the inheritable capabilities");
}

static size_t parse_groups(char *text, gid_t *groups) {
    size_t count = 0;
    for (char *item = strtok(text, ","); item; item = strtok(NULL, ",")) {
        if (count >= MAX_GROUPS)
            usage("too many groups");
        groups[count++] = (gid_t)parse_number(item, UINT_MAX - 1);
    }
    return count;
}

static void switch_identity(uid_t uid, gid_t gid, const gid_t *groups, size_t group_count, int no_new_privs,
                            int epilogue) {
    if (!epilogue && (uid == 0 || gid == 0)) {
        errno = EPERM;
        fail("system", "the payload never runs as root");
    }
    clear_inheritable_capabilities();
    if (setgroups(group_count, groups) != 0)
        fail("system", "setgroups");
    if (setresgid(gid, gid, gid) != 0)
        fail("system", "setresgid");
    if (setresuid(uid, uid, uid) != 0)
        fail("system", "setresuid");
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0)
        fail("system", "getresuid");
    if (ruid != uid || euid != uid || suid != uid || rgid != gid || egid != gid || sgid != gid) {
        errno = EPERM;
        fail("system", "the identity switch did not take");
    }
    /*
     * Not dumpable until the exec (which sets it anew for the payload): with fs.suid_dumpable = 1
     * the kernel would leave this process open to the target's ptrace, and in the monitor's child
     * it still holds a copy of the monitor's memory (the caller's environment, the plan).
     */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        fail("system", "prctl(PR_SET_DUMPABLE)");
    if (no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail("system", "prctl(PR_SET_NO_NEW_PRIVS)");
}

/* As the target: the caller's directory if the target may enter it, else its home, else /. */
static void enter_working_directory(int cwd_fd, const char *home) {
    int entered = cwd_fd >= 0 && fchdir(cwd_fd) == 0;
    if (!entered && home && home[0] == '/')
        entered = chdir(home) == 0;
    if (!entered && chdir("/") != 0)
        fail("system", "chdir /");
    if (cwd_fd >= 0 && close(cwd_fd) != 0)
        fail("system", "close");
    char path[PATH_MAX];
    if (!getcwd(path, sizeof path))
        fail("system", "getcwd");
    report("cwd", "%s", path);
}

/*
 * The stack the steps below use once the caller's limits are set (report's raw text, vsnprintf,
 * strerror: under 8 KiB), made part of the process's stack now, while glexec's own limits hold. A
 * program exec'd for the start gets at least 128 KiB of stack from the kernel; the monitor's child
 * has the monitor's stack instead, which a caller's soft RLIMIT_STACK (or RLIMIT_AS) below its
 * size forbids to grow: that child died of SIGSEGV before the exec, and the run read as a payload
 * killed by it. 32 KiB, four times the need: 128 KiB cost 0.35 ms more a start (fork, touch, exit).
 */
#define STACK_RESERVE (32 * 1024)

static __attribute__((noinline)) void reserve_stack(void) {
    volatile char reserve[STACK_RESERVE];
    /* From the top down, every KiB, so that each page is touched in the order the stack grows. */
    for (size_t at = sizeof reserve; at > 0; at -= 1024)
        reserve[at - 1] = 0;
}

_Noreturn void start_payload_run(char **argv, char **env) {
    reserve_stack();
    int argc = 0;
    while (argv[argc])
        argc++;
    int flags = fcntl(STATUS_FD, F_GETFD);
    if (flags < 0 && errno != EBADF)
        fail("system", "fcntl");
    /* Closed by the exec below, so the payload never inherits the status pipe. */
    if (flags >= 0 && fcntl(STATUS_FD, F_SETFD, flags | FD_CLOEXEC) != 0)
        fail("system", "fcntl");
    if (geteuid() != 0)
        usage("must be run by root");

    /*
     * Allocated here, before any of the caller's limits is set, not static: 256 KiB in the shim's
     * zero-initialised data would count against the caller's soft RLIMIT_DATA when the setuid
     * shim is loaded, before it lifts its limits, and be in every glexec process's address space.
     */
    gid_t *groups = calloc(MAX_GROUPS, sizeof *groups);
    if (!groups)
        fail("system", "cannot allocate the group list");
    size_t group_count = 0;
    long uid = -1, gid = -1;
    int no_new_privs = 0, no_symlink = 0, epilogue = 0, cwd_fd = -1;
    const char *home = NULL;
    int separator = 1;
    for (; separator < argc && strcmp(argv[separator], "--") != 0; separator++) {
        char *arg = argv[separator];
        if (strncmp(arg, "--cgroup-procs=", 15) == 0)
            join_cgroup(arg + 15);
        else if (strncmp(arg, "--rlimit=", 9) == 0)
            set_limit(arg + 9);
        else if (strncmp(arg, "--uid=", 6) == 0)
            uid = (long)parse_number(arg + 6, UINT_MAX - 1);
        else if (strncmp(arg, "--gid=", 6) == 0)
            gid = (long)parse_number(arg + 6, UINT_MAX - 1);
        else if (strncmp(arg, "--groups=", 9) == 0)
            group_count = parse_groups(arg + 9, groups);
        else if (strncmp(arg, "--cwd-fd=", 9) == 0)
            cwd_fd = (int)parse_number(arg + 9, INT_MAX);
        else if (strncmp(arg, "--home=", 7) == 0)
            home = arg + 7;
        else if (strcmp(arg, "--no-new-privs") == 0)
            no_new_privs = 1;
        else if (strcmp(arg, "--no-symlink") == 0)
            no_symlink = 1;
        else if (strcmp(arg, "--epilogue") == 0)
            epilogue = 1;
        else
            usage("unknown argument");
    }
    if (separator >= argc - 1 || uid < 0 || gid < 0)
        usage("usage: start-payload [options] --uid=N --gid=N -- PROGRAM [ARG]...");
    const char *program = argv[separator + 1];
    if (program[0] != '/')
        usage("the payload must be an absolute path");

    write_file("/proc/self/oom_score_adj", "0");
    default_signals();
    switch_identity((uid_t)uid, (gid_t)gid, groups, group_count, no_new_privs, epilogue);
    enter_working_directory(cwd_fd, home);

    /* No descriptor of glexec's but stdio (and the status pipe, closed on exec) reaches the payload. */
    if (syscall(SYS_close_range, 4U, ~0U, 0U) != 0)
        fail("system", "close_range");
    char **payload_argv = argv + separator + 1;
    /* Both return only on failure, with errno set. */
    if (no_symlink)
        (void)syscall(SYS_execveat, AT_FDCWD, program, payload_argv, env, AT_SYMLINK_NOFOLLOW);
    else
        (void)execve(program, payload_argv, env);
    int error = errno;
    /* An epilogue that is neither ELF nor #! runs under /bin/sh, as execvp(3) (and setpriv) ran it. */
    if (epilogue && error == ENOEXEC) {
        payload_argv[-1] = "/bin/sh";
        (void)execve("/bin/sh", payload_argv - 1, env);
        error = errno;
    }
    if (no_symlink && error == ELOOP)
        report("symlink", "%s", program);
    else
        report("exec", "%s", strerror(error));
    _exit(EXIT_CANNOT_EXECUTE);
}

#ifndef START_PAYLOAD_IN_MONITOR
extern char **environ;

int main(int argc, char **argv) {
    (void)argc;
    start_payload_run(argv, environ);
}
#endif
