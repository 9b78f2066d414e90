/*
 * Test helper: plays a pilot that leaves process state behind for glexec, then execs it.
 *   caller-state [--itimers] [--slack=NS] [--oom=N] [--empty-argv] -- PROGRAM [ARG]...
 * --itimers arms ITIMER_VIRTUAL and ITIMER_PROF (20 ms of CPU) and ITIMER_REAL (100 ms, then every
 * 20 ms); --slack sets the
 * timer slack; --oom writes oom_score_adj; --empty-argv execs PROGRAM with argc 0.
 * --background-tty runs PROGRAM in a background process group of a new pseudo-terminal with
 * `tostop` (stdio on the terminal), waits for it, and prints "exited N" or "stopped by N", and
 * then what it wrote on the terminal ("tty: ..."), if anything.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

extern char **environ;

static void fail(const char *what) {
    perror(what);
    exit(100);
}

/* The session leader of a new terminal stays in the foreground; PROGRAM runs in a group of its own. */
static int run_in_background(char **program) {
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0)
        fail("posix_openpt");
    const char *slave_name = ptsname(master);
    if (!slave_name)
        fail("ptsname");
    pid_t leader = fork();
    if (leader < 0)
        fail("fork");
    if (leader == 0) {
        if (setsid() < 0)
            fail("setsid");
        int slave = open(slave_name, O_RDWR); /* becomes the controlling terminal */
        struct termios settings;
        if (slave < 0 || tcgetattr(slave, &settings) != 0)
            fail("open the terminal");
        settings.c_lflag |= TOSTOP;
        if (tcsetattr(slave, TCSANOW, &settings) != 0)
            fail("tcsetattr");
        pid_t child = fork();
        if (child < 0)
            fail("fork");
        if (child == 0) {
            if (setpgid(0, 0) != 0 || dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0)
                fail("background group");
            execv(program[0], program);
            fail("execv");
        }
        int status;
        if (waitpid(child, &status, WUNTRACED) != child)
            fail("waitpid");
        if (WIFSTOPPED(status)) {
            printf("stopped by %d\n", WSTOPSIG(status));
            kill(child, SIGKILL);
        } else {
            printf("exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        }
        fflush(stdout);
        _exit(0);
    }
    int status;
    if (waitpid(leader, &status, 0) != leader)
        fail("waitpid");
    char output[4096];
    int flags = fcntl(master, F_GETFL);
    if (flags < 0 || fcntl(master, F_SETFL, flags | O_NONBLOCK) != 0)
        fail("fcntl");
    ssize_t length = read(master, output, sizeof output - 1);
    if (length > 0) {
        output[length] = '\0';
        printf("tty: %s", output);
    }
    return 0;
}

int main(int argc, char **argv) {
    int i = 1, itimers = 0, empty_argv = 0, background_tty = 0;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--itimers") == 0) {
            itimers = 1;
        } else if (strcmp(argv[i], "--empty-argv") == 0) {
            empty_argv = 1;
        } else if (strcmp(argv[i], "--background-tty") == 0) {
            background_tty = 1;
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
    if (background_tty)
        return run_in_background(argv + i + 1);
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
