/*
 * create_target_proxy's /tmp copy, removed by the monitor when it concludes a run itself
 * (docs/architecture.md, "A run with nothing to conclude"). src/proxy/registry.ts made the copy
 * and its record, and phase 2 removes them (removeLocked, removeCreatedProxy); this file does the
 * same in the one case that needs no decision: the record, under its lock, is still the text
 * phase 1 wrote, and the name still holds the copy's inode. Anything else changes nothing and
 * phase 2 runs.
 */
#define _GNU_SOURCE
#include "proxy-copy.h"
#include "monitor.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A record is at most this long (registry.ts MAX_RECORD_BYTES). */
#define RECORD_MAX 4096
/* How long the monitor waits for a renewal's lock before it leaves the removal to phase 2 (which waits 30 s). */
#define LOCK_WAIT_MS 1000
#define LOCK_RETRY_MS 10

int parse_proxy_copy(char *value, struct proxy_copy *copy) {
    memset(copy, 0, sizeof *copy);
    if (value[0] == '\0')
        return 1;
    char *lines[4];
    lines[0] = value;
    for (int i = 1; i < 4; i++) {
        char *newline = strchr(lines[i - 1], '\n');
        if (!newline)
            return 0;
        *newline = '\0';
        lines[i] = newline + 1;
    }
    unsigned long long uid, gid;
    int used = 0;
    if (strchr(lines[3], '\n') || lines[0][0] < '0' || lines[0][0] > '9' ||
        sscanf(lines[0], "%llu %llu %llu %llu%n", &uid, &gid, &copy->dev, &copy->ino, &used) != 4 ||
        (size_t)used != strlen(lines[0]) || uid == 0 || uid >= (unsigned long long)(uid_t)-1 ||
        gid >= (unsigned long long)(gid_t)-1 || lines[1][0] != '/' || lines[2][0] != '/' ||
        strlen(lines[3]) > RECORD_MAX)
        return 0;
    copy->uid = (uid_t)uid;
    copy->gid = (gid_t)gid;
    copy->record_path = lines[1];
    copy->path = lines[2];
    copy->record_text = lines[3];
    copy->present = 1;
    return 1;
}

/* flock(LOCK_EX) for at most LOCK_WAIT_MS; 1 when held. */
static int lock_record(int fd) {
    long long deadline = monotonic_ms() + LOCK_WAIT_MS;
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 1;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return 0;
        if (monotonic_ms() >= deadline)
            return 0;
        const struct timespec pause = {0, LOCK_RETRY_MS * 1000000L};
        if (nanosleep(&pause, NULL) != 0 && errno != EINTR)
            return 0;
    }
}

/* Whether the record, read from offset 0, is exactly `text`. */
static int record_is(int fd, const char *text) {
    char data[RECORD_MAX + 2];
    size_t used = 0;
    for (;;) {
        ssize_t got = pread(fd, data + used, sizeof data - used, (off_t)used);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return 0;
        if (got == 0 || used + (size_t)got == sizeof data) {
            used += (size_t)got;
            break;
        }
        used += (size_t)got;
    }
    return used == strlen(text) && memcmp(data, text, used) == 0;
}

/* As the target (file-system ids only; the monitor has no supplementary groups): 1 when the copy was unlinked. */
static int unlink_as_target(const struct proxy_copy *copy) {
    setfsgid(copy->gid);
    setfsuid(copy->uid);
    int removed = 0;
    /* setfsuid reports the id in force, not an error: asked again with an invalid id, which changes nothing. */
    if ((uid_t)setfsuid((uid_t)-1) == copy->uid && (gid_t)setfsgid((gid_t)-1) == copy->gid) {
        struct stat st;
        removed = lstat(copy->path, &st) == 0 && S_ISREG(st.st_mode) && (unsigned long long)st.st_dev == copy->dev &&
                  (unsigned long long)st.st_ino == copy->ino && unlink(copy->path) == 0;
    }
    setfsuid(0);
    setfsgid(0);
    if (setfsuid((uid_t)-1) != 0 || setfsgid((gid_t)-1) != 0) {
        errno = 0;
        monitor_fail("cannot return to root after acting as the target");
    }
    return removed;
}

int remove_proxy_copy(const struct proxy_copy *copy) {
    if (!copy->present)
        return 1;
    int fd = open(copy->record_path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return 0;
    struct stat st;
    int done = lock_record(fd) && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0 && st.st_nlink == 1 &&
               record_is(fd, copy->record_text) && unlink_as_target(copy) && unlink(copy->record_path) == 0;
    /* Closing drops the lock: a renewal waiting for it finds the record gone, as after phase 2's removal. */
    if (close(fd) != 0)
        monitor_fail("close");
    return done;
}
