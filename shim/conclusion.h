/* A run with nothing to conclude (conclusion.c): the monitor's part of phase 2, when there is none. */
#ifndef GLEXEC_CONCLUSION_H
#define GLEXEC_CONCLUSION_H

#include <stddef.h>
#include <sys/types.h>

/* Signals 1..SIGNAL_COUNT each have their `ending` in a trivial plan (src/plan.ts). */
#define SIGNAL_COUNT 64

/* What the plan says of a trivial conclusion (its trivial-* fields). */
struct trivial_conclusion {
    long long log_gid; /* the log file's group; -1: phase 2 always runs */
    char **endings;    /* the record's `ending` for signal 1..SIGNAL_COUNT */
    size_t ending_count;
    char **records; /* "CWD\nTEMPLATE", one for each directory start-payload may report */
    size_t record_count;
};

/* What the monitor knows once the payload has ended. */
struct run_end {
    const char *cgroup;      /* the payload's cgroup v2 directory */
    const char *record_file; /* the log file; "" for syslog */
    int record_facility;
    pid_t payload_pid;
    const char *helper_status; /* what start-payload reported */
    int wait_status;
    long long started, payload_started, payload_ended; /* CLOCK_MONOTONIC milliseconds */
    long long epilogue_ms; /* how long the monitor's epilogue ran, which succeeded; -1: none ran */
};

/* The record's `ending`, the payload's return code and glexec's exit code for a wait status; 0 if none. */
int payload_ending(const struct trivial_conclusion *trivial, int wait_status, char *code_ending, size_t size,
                   const char **ending, int *payload_rc, int *exit_code);

/*
 * Whether the payload ended as phase 1 foresaw (a record for the directory start-payload reported,
 * a known ending, an empty cgroup), so that the monitor may run the epilogue; `payload_rc` gets
 * the payload's return code.
 */
int trivial_ready(const struct trivial_conclusion *trivial, const struct run_end *end, int *payload_rc);

/* PRIVILEGE: concludes the run if it is as foreseen; the exit code, or -1 (nothing changed: phase 2 runs). */
int conclude_trivially(const struct trivial_conclusion *trivial, const struct run_end *end);

#endif
