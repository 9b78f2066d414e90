/*
 * A run with nothing to conclude (docs/architecture.md): when phase 1 found that phase 2 would
 * only run the epilogue, remove the payload's empty cgroup and write the completion record, and
 * the run went as it foresaw, the monitor does it all itself (the epilogue: epilogue.c), from
 * the record phase 1 rendered with slots for what is known only at the end. TypeScript decided;
 * this file only checks and executes.
 */
#define _GNU_SOURCE
#include "conclusion.h"
#include "monitor.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* The directories above the log file, each a root-owned directory that only root can write: no symlink, no "." or "..". */
static int trusted_directories(const char *file) {
    char path[PATH_MAX];
    size_t length = strlen(file);
    if (file[0] != '/' || length >= sizeof path)
        return 0;
    memcpy(path, file, length + 1);
    char *last = strrchr(path, '/');
    for (char *at = path;; at = strchr(at + 1, '/')) {
        if (at != path) {
            /* The component before this slash: never empty, ".", or "..". */
            char *start = at - 1;
            while (*start != '/')
                start--;
            size_t name = (size_t)(at - start - 1);
            if (name == 0 || (name == 1 && start[1] == '.') || (name == 2 && start[1] == '.' && start[2] == '.'))
                return 0;
        }
        char kept = at[1];
        at[1] = '\0';
        if (at != path)
            at[0] = '\0';
        struct stat st;
        int trusted = lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0 && !(st.st_mode & (S_IWGRP | S_IWOTH));
        at[0] = '/';
        at[1] = kept;
        if (!trusted)
            return 0;
        if (at == last)
            return 1;
    }
}

/* Whether the cgroup's cgroup.events says that no process is in it. */
static int cgroup_empty(const char *cgroup) {
    char path[PATH_MAX], events[4096];
    int length = snprintf(path, sizeof path, "%s/cgroup.events", cgroup);
    if (length < 0 || (size_t)length >= sizeof path)
        return 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t got;
    do
        got = read(fd, events, sizeof events - 1);
    while (got < 0 && errno == EINTR);
    if (close(fd) != 0 || got <= 0)
        return 0;
    events[got] = '\0';
    return strncmp(events, "populated 0\n", 12) == 0 || strstr(events, "\npopulated 0\n") != NULL;
}

/*
 * Whether a syslog daemon receives on /dev/log, asked as src/sys/syslog.ts asks it: a stream
 * connect to a datagram socket fails with EPROTOTYPE only when one is bound there.
 */
static int syslog_listening(void) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    memcpy(address.sun_path, "/dev/log", sizeof "/dev/log");
    int listening = connect(fd, (const struct sockaddr *)&address, sizeof address) == 0 || errno == EPROTOTYPE;
    if (close(fd) != 0)
        monitor_fail("close");
    return listening;
}

/* UTC now as ISO 8601 with milliseconds, as JavaScript's toISOString writes it. */
static void iso_time(char *text, size_t size) {
    struct timespec now;
    struct tm utc;
    char seconds[32];
    if (clock_gettime(CLOCK_REALTIME, &now) != 0 || !gmtime_r(&now.tv_sec, &utc) ||
        strftime(seconds, sizeof seconds, "%Y-%m-%dT%H:%M:%S", &utc) == 0 ||
        snprintf(text, size, "%s.%03ldZ", seconds, now.tv_nsec / 1000000) < 0)
        monitor_fail("the time of the record");
}

/*
 * The completion record from the plan's template, its slots filled in; NULL for a template with a
 * slot the monitor does not know.
 */
static char *fill_record(const char *template, const struct run_end *end, const char *ending, int payload_rc,
                         int exit_code) {
    size_t size = strlen(template) + strlen(ending) + 256, used = 0;
    char *line = malloc(size);
    if (!line)
        monitor_fail("out of memory");
    for (const char *at = template; *at; at++) {
        char value[128];
        const char *text = value;
        value[0] = '\0';
        int length = 0;
        if (*at != SLOT_BYTE) {
            value[0] = *at;
            value[1] = '\0';
        } else {
            switch (*++at) {
            case 'T': {
                char time_text[64];
                iso_time(time_text, sizeof time_text);
                length = snprintf(value, sizeof value, "\"%s\"", time_text);
                break;
            }
            case 'P':
                length = snprintf(value, sizeof value, "%d", (int)getpid());
                break;
            case 'I':
            case 'G':
                length = snprintf(value, sizeof value, "%d", (int)end->payload_pid);
                break;
            case 'E':
                text = ending;
                break;
            case 'R':
                length = snprintf(value, sizeof value, "%d", payload_rc);
                break;
            case 'X':
                length = snprintf(value, sizeof value, "%d", exit_code);
                break;
            case 'M':
                length = snprintf(value, sizeof value, "%lld", end->payload_ended - end->payload_started);
                break;
            case 'A':
                length = snprintf(value, sizeof value, "%lld", monotonic_ms() - end->started);
                break;
            case 'D':
                /* The record's `epilogue` of one that succeeded, as src/pipeline.ts completionFields writes it. */
                if (end->epilogue_ms < 0) {
                    free(line);
                    return NULL;
                }
                length = snprintf(value, sizeof value,
                                  "{\"result\":\"ok\",\"exitCode\":0,\"durationMs\":%lld,\"leftovers\":\"none\"}",
                                  end->epilogue_ms);
                break;
            default:
                free(line);
                return NULL;
            }
        }
        if (length < 0)
            monitor_fail("snprintf");
        size_t add = strlen(text);
        if (used + add + 1 > size) {
            free(line);
            return NULL;
        }
        memcpy(line + used, text, add);
        used += add;
    }
    line[used] = '\0';
    return line;
}

/*
 * How phase 2 reads the payload's wait status (src/exitcode.ts): the record's `ending` (JSON), the
 * payload's return code (a signal N is 128+N), and glexec's exit code (201..204 become 204). 0 for
 * a status that is neither an exit nor a signal 1..SIGNAL_COUNT.
 */
int payload_ending(const struct trivial_conclusion *trivial, int wait_status, char *code_ending, size_t size,
                   const char **ending, int *payload_rc, int *exit_code) {
    if (WIFEXITED(wait_status)) {
        *payload_rc = WEXITSTATUS(wait_status);
        *exit_code = *payload_rc >= 201 && *payload_rc <= 204 ? 204 : *payload_rc;
        int length = snprintf(code_ending, size, "{\"code\":%d}", *payload_rc);
        if (length < 0 || (size_t)length >= size)
            monitor_fail("snprintf");
        *ending = code_ending;
        return 1;
    }
    if (WIFSIGNALED(wait_status) && WTERMSIG(wait_status) >= 1 && WTERMSIG(wait_status) <= SIGNAL_COUNT &&
        trivial->ending_count == SIGNAL_COUNT) {
        *payload_rc = *exit_code = 128 + WTERMSIG(wait_status);
        *ending = trivial->endings[WTERMSIG(wait_status) - 1];
        return 1;
    }
    return 0;
}

/*
 * PRIVILEGE: phase 2's work for a run in which phase 1 found nothing for it to do but remove the
 * payload's cgroup and write the completion record (src/pipeline.ts, trivialConclusion), the
 * epilogue run by the monitor before (epilogue.c, end->epilogue_ms): no target proxy copy, a
 * cgroup v2 containment and nothing below notice. The monitor does it only if the run went as foreseen: start-payload reported one
 * of the directories phase 1 rendered the record for, the cgroup is empty, the log file is as
 * phase 1 left it (or a daemon receives on /dev/log). Otherwise, having changed nothing, it returns -1, and phase 2 runs as ever. On
 * success it returns the exit code phase 2 would have: the payload's, 201..204 as 204, a signal N
 * as 128+N.
 */
/* The record's template for the directory start-payload reported; NULL if phase 1 made none for it. */
static const char *record_template(const struct trivial_conclusion *trivial, const struct run_end *end) {
    const char *template = NULL;
    for (size_t i = 0; i < trivial->record_count && !template; i++) {
        const char *record = trivial->records[i];
        size_t cwd = (size_t)(strchr(record, '\n') - record);
        if (strncmp(end->helper_status, "cwd ", 4) == 0 && strlen(end->helper_status) == 4 + cwd + 1 &&
            memcmp(end->helper_status + 4, record, cwd) == 0 && end->helper_status[4 + cwd] == '\n')
            template = record + cwd + 1;
    }
    return template;
}

int trivial_ready(const struct trivial_conclusion *trivial, const struct run_end *end, int *payload_rc) {
    char code_ending[32];
    const char *ending;
    int exit_code;
    return trivial->log_gid >= 0 && end->payload_pid > 0 && end->cgroup[0] == '/' && record_template(trivial, end) &&
           payload_ending(trivial, end->wait_status, code_ending, sizeof code_ending, &ending, payload_rc, &exit_code) &&
           cgroup_empty(end->cgroup);
}

int conclude_trivially(const struct trivial_conclusion *trivial, const struct run_end *end) {
    if (trivial->log_gid < 0 || end->payload_pid <= 0 || end->cgroup[0] != '/')
        return -1;
    const char *template = record_template(trivial, end);
    char code_ending[32];
    const char *ending;
    int payload_rc, exit_code;
    if (!payload_ending(trivial, end->wait_status, code_ending, sizeof code_ending, &ending, &payload_rc, &exit_code) ||
        !template || !cgroup_empty(end->cgroup))
        return -1;
    if (end->record_file[0] == '\0') {
        /* Syslog: phase 2 writes at notice, then asks whether anyone listens (else the file, and 202). */
        char *text = fill_record(template, end, ending, payload_rc, exit_code);
        if (!text || !syslog_listening() || rmdir(end->cgroup) != 0) {
            free(text);
            return -1;
        }
        openlog("glexec", LOG_PID | LOG_NDELAY, end->record_facility);
        syslog(LOG_NOTICE, "%s", text);
        closelog();
        return exit_code;
    }
    if (end->record_file[0] != '/' || !trusted_directories(end->record_file))
        return -1;
    int fd = open(end->record_file, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -1;
    struct stat st;
    mode_t mode = trivial->log_gid == 0 ? 0600 : 0640;
    char *line = fill_record(template, end, ending, payload_rc, exit_code);
    if (!line || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || st.st_nlink != 1 ||
        (long long)st.st_gid != trivial->log_gid || (st.st_mode & 07777) != mode || rmdir(end->cgroup) != 0) {
        free(line);
        if (close(fd) != 0)
            monitor_fail("close");
        return -1;
    }
    if (write_fully(fd, line, strlen(line)) != 0) {
        /* Phase 2 finds the cgroup as it was and writes (or fails to write) the record itself. */
        if (mkdir(end->cgroup, 0755) != 0)
            monitor_fail("cannot make the payload's cgroup again for the concluding phase");
        free(line);
        if (close(fd) != 0)
            monitor_fail("close");
        return -1;
    }
    free(line);
    if (close(fd) != 0)
        monitor_fail("close");
    return exit_code;
}
