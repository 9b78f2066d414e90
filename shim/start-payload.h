/* The start of a payload or an epilogue (start-payload.c), as the monitor calls it in its child. */
#ifndef GLEXEC_START_PAYLOAD_H
#define GLEXEC_START_PAYLOAD_H

/*
 * PRIVILEGE: in a child the monitor forked (root, in the payload's cgroup and session, its status
 * pipe on 3 and the caller's directory on 4 when given): start-payload's steps for `argv`
 * ([0] its name, then its options, "--", the program and its arguments; NULL-terminated), then
 * the exec of the program with `env`. Never returns: the exec, or _exit(126) after one status line.
 */
_Noreturn void start_payload_run(char **argv, char **env);

#endif
