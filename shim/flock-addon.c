/*
 * flock.node: flock(2) for glexec, which Node does not offer. One function,
 *   lock(fd, exclusive, waitMs) -> 0 when the lock is held, else an errno value
 *   (EWOULDBLOCK: someone else held a conflicting lock for the whole wait).
 * As flock(1) does, it blocks in flock(2) (a waiter the kernel knows, in /proc/locks, woken as
 * soon as the lock is free) and a timer ends the wait: a POSIX timer that sends WAKE_SIGNAL to this
 * thread only, whose handler does nothing, so flock(2) returns EINTR. The timer repeats every
 * RETRY_NS after the deadline, so a signal that came just before flock(2) blocked is followed by
 * another. WAKE_SIGNAL is a real-time signal Node never uses; its previous handler and this thread's
 * signal mask are put back before lock() returns. The descriptor stays glexec's: closing it (or its
 * last duplicate) releases the lock.
 * Built by `npm run build` (scripts/c-programs.mjs) against Node's own headers, installed root-owned
 * next to the bundle and loaded from there by absolute path only.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <errno.h>
#include <node_api.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

/* The longest wait glexec may ask for (an hour): a bound on a mistaken argument, not a policy. */
#define MAX_WAIT_MS 3600000
#define WAKE_SIGNAL (SIGRTMIN + 4)
#define RETRY_NS 5000000L

static void wake(int signal) {
    (void)signal;
}

static bool past(const struct timespec *deadline) {
    struct timespec now;
    /* A clock that cannot be read counts as past: the wait ends rather than never. */
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0)
        return true;
    return now.tv_sec > deadline->tv_sec || (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/* Blocks in flock(2) until the lock is held or the deadline has passed; 0 or an errno value. */
static int wait_for_lock(int fd, int operation, int64_t wait_ms) {
    struct timespec deadline;
    if (clock_gettime(CLOCK_MONOTONIC, &deadline) != 0)
        return errno;
    deadline.tv_sec += (time_t)(wait_ms / 1000);
    deadline.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000L;
    }

    struct sigaction action, previous;
    memset(&action, 0, sizeof action);
    action.sa_handler = wake; /* no SA_RESTART: flock(2) must return EINTR */
    if (sigemptyset(&action.sa_mask) != 0 || sigaction(WAKE_SIGNAL, &action, &previous) != 0)
        return errno;
    int result = 0;
    sigset_t wake_only, mask;
    if (sigemptyset(&wake_only) != 0 || sigaddset(&wake_only, WAKE_SIGNAL) != 0) {
        result = errno;
        goto restore_handler;
    }
    int error = pthread_sigmask(SIG_UNBLOCK, &wake_only, &mask);
    if (error != 0) {
        result = error;
        goto restore_handler;
    }
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = WAKE_SIGNAL;
    event._sigev_un._tid = gettid(); /* sigev_notify_thread_id; glibc 2.36 does not name it */
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &event, &timer) != 0) {
        result = errno;
        goto restore_mask;
    }
    const struct itimerspec when = {.it_value = deadline, .it_interval = {0, RETRY_NS}};
    if (timer_settime(timer, TIMER_ABSTIME, &when, NULL) != 0) {
        result = errno;
    } else {
        for (;;) {
            if (flock(fd, operation) == 0) {
                result = 0;
                break;
            }
            if (errno != EINTR) {
                result = errno;
                break;
            }
            /* The timer's signal, or another one: only the deadline ends the wait. */
            if (past(&deadline)) {
                result = EWOULDBLOCK;
                break;
            }
        }
    }
    /* Deleted first, so no signal of it can come once the previous handler is back. */
    if (timer_delete(timer) != 0 && result == 0)
        result = errno;
restore_mask:
    error = pthread_sigmask(SIG_SETMASK, &mask, NULL);
    if (error != 0 && result == 0)
        result = error;
restore_handler:
    if (sigaction(WAKE_SIGNAL, &previous, NULL) != 0 && result == 0)
        result = errno;
    return result;
}

/* 0 when locked, else an errno value (EWOULDBLOCK when the wait ran out). */
static int lock_until(int fd, int operation, int64_t wait_ms) {
    /* Free (the usual case): no timer and no signal handler at all. */
    if (flock(fd, operation | LOCK_NB) == 0)
        return 0;
    if (errno != EWOULDBLOCK)
        return errno;
    if (wait_ms == 0)
        return EWOULDBLOCK;
    return wait_for_lock(fd, operation, wait_ms);
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
