/*
 * Test helper: plays a pilot that leaves process state behind for glexec, then execs it.
 *   caller-state [--itimers] [--slack=NS] [--oom=N] [--empty-argv] -- PROGRAM [ARG]...
 * --itimers arms ITIMER_VIRTUAL and ITIMER_PROF (20 ms of CPU) and ITIMER_REAL (100 ms, then every
 * 20 ms); --slack sets the
 * timer slack; --oom writes oom_score_adj; --empty-argv execs PROGRAM with argc 0.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <unistd.h>

extern char **environ;

static void fail(const char *what) {
    perror(what);
    exit(100);
}

int main(int argc, char **argv) {
    int i = 1, itimers = 0, empty_argv = 0;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--itimers") == 0) {
            itimers = 1;
        } else if (strcmp(argv[i], "--empty-argv") == 0) {
            empty_argv = 1;
        } else if (strncmp(argv[i], "--slack=", 8) == 0) {
            if (prctl(PR_SET_TIMERSLACK, strtoul(argv[i] + 8, NULL, 10), 0, 0, 0) != 0)
                fail("PR_SET_TIMERSLACK");
        } else if (strncmp(argv[i], "--oom=", 6) == 0) {
            int fd = open("/proc/self/oom_score_adj", O_WRONLY);
            const char *value = argv[i] + 6;
            if (fd < 0 || write(fd, value, strlen(value)) != (ssize_t)strlen(value) || close(fd) != 0)
                fail("oom_score_adj");
        } else {
            fprintf(stderr, "caller-state: unknown option %s\n", argv[i]);
            return 100;
        }
    }
    if (i + 1 >= argc) {
        fprintf(stderr, "caller-state: no program\n");
        return 100;
    }
    if (itimers) {
        /* Armed last, right before the exec, so that they fire in glexec, not here. */
        struct itimerval every = {{0, 20000}, {0, 20000}};
        if (setitimer(ITIMER_VIRTUAL, &every, NULL) != 0 || setitimer(ITIMER_PROF, &every, NULL) != 0)
            fail("setitimer");
        /* The real timer first fires after 100 ms: long after the shim, within Node's start. */
        struct itimerval real = {{0, 20000}, {0, 100000}};
        if (setitimer(ITIMER_REAL, &real, NULL) != 0)
            fail("setitimer");
    }
    char *none[] = {NULL};
    execve(argv[i + 1], empty_argv ? none : argv + i + 1, environ);
    fail("execve");
}
