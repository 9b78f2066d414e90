/* create_target_proxy's /tmp copy, removed by the monitor when it concludes a run itself (proxy-copy.c). */
#ifndef GLEXEC_PROXY_COPY_H
#define GLEXEC_PROXY_COPY_H

#include <sys/types.h>

/* The plan's proxy-copy field (src/plan.ts MonitorProxyCopy). */
struct proxy_copy {
    int present;
    uid_t uid; /* the target's: only the copy's owner may unlink it in sticky /tmp */
    gid_t gid;
    unsigned long long dev, ino; /* the copy's inode as glexec made it */
    char *record_path;           /* its record in root's registry (src/proxy/registry.ts) */
    char *path;
    char *record_text; /* the record as phase 1 wrote it */
};

/* Parses the field's value in place ("UID GID DEV INO\nRECORD\nPATH\nTEXT"); 0 when it is not that. */
int parse_proxy_copy(char *value, struct proxy_copy *copy);

/*
 * PRIVILEGE: removes the copy as phase 2 would (removeLocked, removeCreatedProxy), then its
 * record; 1 when done, 0 when left to phase 2 with nothing changed (the record rewritten by a
 * renewal, or gone, or locked for long; the name holding another inode; any failure).
 */
int remove_proxy_copy(const struct proxy_copy *copy);

#endif
