/* glexec's monitor (monitor.c): the long-lived root process of a run, after the shim's set-up. */
#ifndef GLEXEC_MONITOR_H
#define GLEXEC_MONITOR_H

#include <stddef.h>

/* start-payload's exit when it could not start the program, and the monitor's child's likewise. */
#define EXIT_CANNOT_EXECUTE 126
/*
 * In a template of phase 1's (a record, the epilogue's environment), this byte and a letter stand
 * for a value the monitor fills in (src/log/logger.ts SLOT_BYTE).
 */
#define SLOT_BYTE '\x01'

/*
 * Runs the two TypeScript phases and, between them, the payload; exits with the run's exit code
 * (never returns). `node_argv` is the node command line with three slots, at `phase_slot`, for the
 * phase arguments (--phase=, --plan-fd=, --done-fd=); `caller_stderr` and `cwd_fd` are the shim's descriptors
 * (cwd_fd -1 when the caller's directory could not be opened); `decide_only` are descriptors only
 * phase 1 reads (the caller's environment and proxy; -1 for none), closed once it has ended.
 */
_Noreturn void monitor_run(char **node_argv, size_t phase_slot, char *const node_env[], int caller_stderr, int cwd_fd,
                           const int decide_only[2]);

/* For conclusion.c: the monitor's failure (ends and records a started payload, exit 202), and its clock. */
_Noreturn void monitor_fail(const char *what);
long long monotonic_ms(void);

/*
 * For the monitor's children that run start-payload's steps (monitor.c, epilogue.c), before them:
 * child_high_copy moves `fd` above the descriptors the child sets up (0..4), closed on exec;
 * child_cannot_start writes "system WHAT: the error" on the status pipe and exits 126;
 * child_close_from closes every descriptor from `first` on, as the exec of start-payload did (a
 * caller's small descriptor limit, soon the child's, counts them).
 */
int child_high_copy(int fd);
_Noreturn void child_cannot_start(int status_fd, const char *what);
void child_close_from(unsigned first);

/* Writes all of `data` (a write interrupted by a signal is retried); 0, or -1 with errno. */
int write_fully(int fd, const char *data, size_t length);

/*
 * What start-payload wrote on its status pipe `fd`, NUL-terminated in `status`, until it closed
 * (at the exec, or its exit) or until `deadline` (CLOCK_MONOTONIC ms; -1: none).
 */
void read_helper_status(int fd, char *status, size_t size, long long deadline);

#endif
