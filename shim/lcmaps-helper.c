/*
 * glexec's bridge to the real LCMAPS library, used by `lcmaps_backend = library` and, run
 * directly, as the test suite's oracle. It calls LCMAPS as gLExec 0.9 did:
 * lcmaps_init_and_logfile, lcmaps_run_with_pem_and_return_account with the policy names,
 * lcmaps_term. It is a process of its own because lcmaps_posix_enf.mod switches the identity of
 * whatever process runs it.
 *
 * Installed root-only (0700) next to glexec.js; only root runs it, with an environment glexec
 * builds (LCMAPS_DB_FILE, LCMAPS_DEBUG_LEVEL, LCMAPS_LOG_LEVEL, X509_CERT_DIR, X509_VOMS_DIR).
 * Usage: lcmaps-helper LIBRARY [POLICY...]   (no policy: LCMAPS runs every policy of lcmaps.db)
 * The proxy (PEM: certificates, optionally the key) comes on descriptor 0.
 * Output on descriptor 1, one fact a line:
 *   uid N
 *   pgids N [N...]
 *   sgids [N...]
 *   poolindex TEXT      (only when LCMAPS returned one)
 * LCMAPS's own log lines go to descriptor 2, so the caller can give LCMAPS's reason for a denial.
 * Exit: 0 mapped, 1 LCMAPS did not map (denied), 2 the helper or the library could not run.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define EXIT_MAPPED 0
#define EXIT_DENIED 1
#define EXIT_BROKEN 2
/* A proxy with its chain and key is a few kilobytes; anything near this is not a proxy. */
#define MAX_PEM_BYTES (1024 * 1024)
/* LCMAPS's logtype flag for "log to the file or stream given" (lcmaps_defines.h DO_USRLOG). */
#define LCMAPS_DO_USRLOG 0x0001

/* The signatures of lcmaps_basic.h, declared here so the helper builds without liblcmaps-dev. */
typedef int init_and_logfile_fn(char *logfile, FILE *fp, unsigned short logtype);
typedef int run_with_pem_fn(char *user_dn, char *pem_string, int mapcounter, char *request, int npols, char **policynames,
                            uid_t *puid, gid_t **ppgid_list, int *pnpgid, gid_t **psgid_list, int *pnsgid, char **poolindexp);
typedef int term_fn(void);

static int broken(const char *what, const char *detail) {
    fprintf(stderr, "lcmaps-helper: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    return EXIT_BROKEN;
}

static char *read_pem(void) {
    size_t size = 0;
    char *pem = malloc(MAX_PEM_BYTES + 1);
    if (pem == NULL)
        return NULL;
    for (;;) {
        ssize_t got = read(0, pem + size, MAX_PEM_BYTES - size);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            free(pem);
            return NULL;
        }
        if (got == 0)
            break;
        size += (size_t)got;
        if (size == MAX_PEM_BYTES) {
            free(pem);
            errno = EFBIG;
            return NULL;
        }
    }
    pem[size] = '\0';
    return pem;
}

/* Copies LCMAPS's log (a temporary file) to descriptor 2. */
static void copy_log(FILE *log) {
    char line[4096];
    if (fflush(log) != 0 || fseek(log, 0, SEEK_SET) != 0)
        return;
    while (fgets(line, sizeof line, log) != NULL)
        if (fputs(line, stderr) == EOF)
            return;
}

/* Appends " N" for each gid to the output buffer. */
static int append_gids(char *out, size_t size, size_t *used, const char *name, const gid_t *list, int count) {
    int n = snprintf(out + *used, size - *used, "%s", name);
    if (n < 0 || (size_t)n >= size - *used)
        return -1;
    *used += (size_t)n;
    for (int i = 0; i < count; i++) {
        n = snprintf(out + *used, size - *used, " %lu", (unsigned long)list[i]);
        if (n < 0 || (size_t)n >= size - *used)
            return -1;
        *used += (size_t)n;
    }
    n = snprintf(out + *used, size - *used, "\n");
    if (n < 0 || (size_t)n >= size - *used)
        return -1;
    *used += (size_t)n;
    return 0;
}

/* The mapping as the output lines; LCMAPS frees its lists in lcmaps_term, so this runs before. */
static int format_mapping(char *out, size_t size, uid_t uid, const gid_t *pgids, int npgid, const gid_t *sgids, int nsgid, const char *poolindex) {
    size_t used = 0;
    int n = snprintf(out, size, "uid %lu\n", (unsigned long)uid);
    if (n < 0 || (size_t)n >= size)
        return -1;
    used = (size_t)n;
    if (append_gids(out, size, &used, "pgids", pgids, npgid) != 0 || append_gids(out, size, &used, "sgids", sgids, nsgid) != 0)
        return -1;
    if (poolindex != NULL) {
        n = snprintf(out + used, size - used, "poolindex %s\n", poolindex);
        if (n < 0 || (size_t)n >= size - used)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || argv[1][0] != '/')
        return broken("usage: lcmaps-helper /path/to/liblcmaps.so.0 [POLICY...] < proxy.pem", NULL);
    if (geteuid() != 0)
        return broken("must run as root", NULL);
    char *pem = read_pem();
    if (pem == NULL)
        return broken("cannot read the proxy from descriptor 0", strerror(errno));

    void *library = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    if (library == NULL)
        return broken("cannot load the library", dlerror());
    init_and_logfile_fn *init_and_logfile = (init_and_logfile_fn *)dlsym(library, "lcmaps_init_and_logfile");
    run_with_pem_fn *run_with_pem = (run_with_pem_fn *)dlsym(library, "lcmaps_run_with_pem_and_return_account");
    term_fn *term = (term_fn *)dlsym(library, "lcmaps_term");
    if (init_and_logfile == NULL || run_with_pem == NULL || term == NULL)
        return broken("the library lacks lcmaps_init_and_logfile, lcmaps_run_with_pem_and_return_account or lcmaps_term", argv[1]);

    FILE *log = tmpfile();
    if (log == NULL)
        return broken("cannot make a file for LCMAPS's log", strerror(errno));
    if (init_and_logfile(NULL, log, LCMAPS_DO_USRLOG) != 0) {
        copy_log(log);
        return broken("lcmaps_init_and_logfile failed", NULL);
    }

    uid_t uid = (uid_t)-1;
    gid_t *pgids = NULL, *sgids = NULL;
    int npgid = 0, nsgid = 0;
    char *poolindex = NULL;
    int npols = argc - 2;
    int denied = run_with_pem(NULL, pem, 0, NULL, npols, npols > 0 ? argv + 2 : NULL, &uid, &pgids, &npgid, &sgids, &nsgid, &poolindex);
    /* Room for NGROUPS_MAX gids and a lease name; a mapping that does not fit is refused. */
    static char mapping[65536 * 12 + 8192];
    int unprintable = denied == 0 && npgid >= 1 ? format_mapping(mapping, sizeof mapping, uid, pgids, npgid, sgids, nsgid, poolindex) : 0;
    /* lcmaps_term's result changes nothing for the mapping that was made. */
    (void)term();
    copy_log(log);
    if (denied != 0)
        return EXIT_DENIED;
    if (npgid < 1)
        return broken("LCMAPS mapped no primary group", NULL);
    if (unprintable != 0)
        return broken("the mapping is too long to print", NULL);
    if (fputs(mapping, stdout) == EOF || fflush(stdout) != 0)
        return broken("cannot write the mapping", strerror(errno));
    return EXIT_MAPPED;
}
