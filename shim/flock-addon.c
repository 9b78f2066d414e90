/*
 * flock.node: flock(2) for glexec, which Node does not offer. One function,
 *   lock(fd, exclusive, waitMs) -> 0 when the lock is held, else an errno value
 *   (EWOULDBLOCK: someone else held a conflicting lock for the whole wait).
 * The lock is asked for without blocking and asked again after short sleeps until the deadline:
 * no signal or thread is used, so nothing of Node's own signal handling or event loop is touched
 * (so a waiting glexec is not a blocked waiter in /proc/locks, and takes a freed lock within 25 ms).
 * The descriptor stays glexec's: closing it (or its last duplicate) releases the lock.
 * Built by `npm run build` (scripts/c-programs.mjs) against Node's own headers, installed root-owned
 * next to the bundle and loaded from there by absolute path only.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <errno.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/file.h>
#include <time.h>

/* The longest wait glexec may ask for (an hour): a bound on a mistaken argument, not a policy. */
#define MAX_WAIT_MS 3600000
/* Between two tries: from 1 ms, doubling, at most 25 ms (as often as glexec polls elsewhere). */
#define FIRST_PAUSE_NS 1000000L
#define LONGEST_PAUSE_NS 25000000L

/* CLOCK_MONOTONIC in nanoseconds; false (errno set) if the clock cannot be read. */
static bool now_ns(int64_t *now) {
    struct timespec reading;
    if (clock_gettime(CLOCK_MONOTONIC, &reading) != 0)
        return false;
    *now = (int64_t)reading.tv_sec * 1000000000L + reading.tv_nsec;
    return true;
}

/* 0 when locked, else the errno of the last try (EWOULDBLOCK when the deadline passed). */
static int lock_until(int fd, int operation, int64_t wait_ms) {
    int64_t now;
    if (!now_ns(&now))
        return errno;
    const int64_t deadline = now + wait_ms * 1000000L;
    long pause_ns = FIRST_PAUSE_NS;
    for (;;) {
        if (flock(fd, operation | LOCK_NB) == 0)
            return 0;
        const int error = errno;
        if (error != EWOULDBLOCK && error != EINTR)
            return error;
        if (!now_ns(&now))
            return errno;
        const int64_t left = deadline - now;
        if (left <= 0)
            return EWOULDBLOCK;
        struct timespec pause = {0, left < pause_ns ? (long)left : pause_ns};
        /* Interrupted or not, the deadline decides: the loop tries again and looks at the clock. */
        (void)nanosleep(&pause, NULL);
        if (pause_ns < LONGEST_PAUSE_NS)
            pause_ns = pause_ns * 2 > LONGEST_PAUSE_NS ? LONGEST_PAUSE_NS : pause_ns * 2;
    }
}

static napi_value fail(napi_env env, const char *message) {
    napi_throw_type_error(env, NULL, message);
    return NULL;
}

static napi_value lock(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3)
        return fail(env, "lock(fd, exclusive, waitMs) takes three arguments");
    int32_t fd;
    bool exclusive;
    int64_t wait_ms;
    if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0)
        return fail(env, "lock: fd must be a descriptor number");
    if (napi_get_value_bool(env, argv[1], &exclusive) != napi_ok)
        return fail(env, "lock: exclusive must be a boolean");
    if (napi_get_value_int64(env, argv[2], &wait_ms) != napi_ok || wait_ms < 0 || wait_ms > MAX_WAIT_MS)
        return fail(env, "lock: waitMs must be a number of milliseconds from 0 to 3600000");
    napi_value result;
    if (napi_create_int32(env, lock_until(fd, exclusive ? LOCK_EX : LOCK_SH, wait_ms), &result) != napi_ok)
        return NULL;
    return result;
}

static napi_value init(napi_env env, napi_value exports) {
    napi_value function;
    if (napi_create_function(env, "lock", NAPI_AUTO_LENGTH, lock, NULL, &function) != napi_ok ||
        napi_set_named_property(env, exports, "lock", function) != napi_ok)
        return NULL;
    return exports;
}

NAPI_MODULE(flock, init)
