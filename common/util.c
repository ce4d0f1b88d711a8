#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double ps_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ps_utc_iso(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void ps_path_dir(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, n, ".");
    else if (slash == path)
        snprintf(out, n, "/");
    else
        snprintf(out, n, "%.*s", (int)(slash - path), path);
}

void ps_path_relative_to(const char *base_file, const char *rel, char *out, size_t n)
{
    if (rel[0] == '/' || !strchr(base_file, '/')) {
        snprintf(out, n, "%s", rel);
        return;
    }
    char dir[4096];
    ps_path_dir(base_file, dir, sizeof dir);
    snprintf(out, n, "%s/%s", dir, rel);
}

int ps_mkdir_p(const char *dir, ps_err *e)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST)
            return ps_errf(e, PS_ERUN, "%s: cannot create folder: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST)
        return ps_errf(e, PS_ERUN, "%s: cannot create folder: %s", buf, strerror(errno));
    return 0;
}

int ps_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

char *ps_file_read(const char *path, size_t *len, ps_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ps_errf(e, PS_EINPUT, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        ps_errf(e, PS_ERUN, "%s: read failed", path);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

int ps_file_write_atomic(const char *path, const char *data, size_t len, ps_err *e)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return ps_errf(e, PS_ERUN, "%s: cannot write: %s", tmp, strerror(errno));
    int bad = fwrite(data, 1, len, f) != len;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        remove(tmp);
        return ps_errf(e, PS_ERUN, "%s: write failed: %s", path, strerror(errno));
    }
    return 0;
}

void ps_progress_start(ps_progress *p, const char *label, size_t total)
{
    memset(p, 0, sizeof *p);
    const char *q = getenv("PLANSIM_QUIET");
    p->enabled = isatty(STDERR_FILENO) && !(q && *q && strcmp(q, "0"));
    p->total = total;
    p->t0 = ps_now_s();
    snprintf(p->label, sizeof p->label, "%s", label);
}

void ps_progress_update(ps_progress *p, size_t done, const char *detail)
{
    if (!p->enabled)
        return;
    double now = ps_now_s();
    if (done < p->total && now - p->last_s < 0.1)
        return;
    p->last_s = now;
    double el = now - p->t0;
    char eta[32] = "";
    if (done > 0 && done < p->total)
        snprintf(eta, sizeof eta, "  eta %.0fs", el / (double)done * (double)(p->total - done));
    fprintf(stderr, "\r\033[K%s %zu/%zu (%.0f%%)  %.1fs%s  %s", p->label, done, p->total,
            p->total ? 100.0 * (double)done / (double)p->total : 100.0, el, eta,
            detail ? detail : "");
    fflush(stderr);
}

void ps_progress_end(ps_progress *p)
{
    if (p->enabled) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
}

uint64_t ps_fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *c = data;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t ps_fnv1a_u64(uint64_t h, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t ps_fnv1a_str(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t ps_double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}
