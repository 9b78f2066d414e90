/*
 * glexec's helper to start the payload inside its cgroup: it writes its own pid into each
 * cgroup.procs file named before "--", then execs the rest of its arguments (prlimit or setpriv,
 * which switch identity and exec the payload), keeping its pid. So the payload is born in its
 * cgroup and no fork of it can ever happen outside, while glexec itself (multi-threaded, where a
 * cgroup move is slow) never moves.
 *
 * Installed root-only (0700) next to glexec.js; the Node program runs it as root.
 * Usage: into-cgroup /path/to/cgroup.procs [more cgroup.procs…] -- /usr/bin/setpriv …
 * Descriptor 3, when open, is glexec's status pipe: it is closed on exec (so a successful start
 * closes it with nothing written, and the payload never inherits it); a failure writes one line
 * there, so glexec can tell its own failure (202) from the payload's exit code.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The exit code util-linux tools use when they cannot exec: the payload could not start. */
#define EXIT_CANNOT_EXECUTE 126

#define STATUS_FD 3

static int fail(const char *what, const char *path) {
    char line[512];
    int length = snprintf(line, sizeof line, "%s %s: %s\n", what, path, strerror(errno));
    if (length > 0 && write(STATUS_FD, line, (size_t)length) < 0)
        fprintf(stderr, "glexec into-cgroup: %s", line);
    return EXIT_CANNOT_EXECUTE;
}

int main(int argc, char **argv) {
    /* Closed by the exec below, so the payload never inherits the status pipe. */
    int flags = fcntl(STATUS_FD, F_GETFD);
    if (flags >= 0)
        fcntl(STATUS_FD, F_SETFD, flags | FD_CLOEXEC);
    int separator = 1;
    while (separator < argc && strcmp(argv[separator], "--") != 0)
        separator++;
    if (separator >= argc - 1 || geteuid() != 0) {
        fprintf(stderr, "glexec into-cgroup: usage: into-cgroup PROCS... -- PROGRAM [ARGS...] (as root)\n");
        return EXIT_CANNOT_EXECUTE;
    }
    char pid[32];
    int length = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    for (int i = 1; i < separator; i++) {
        int fd = open(argv[i], O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            return fail("cannot open", argv[i]);
        if (write(fd, pid, (size_t)length) != length)
            return fail("cannot join", argv[i]);
        close(fd);
    }
    execv(argv[separator + 1], argv + separator + 1);
    return fail("cannot execute", argv[separator + 1]);
}
