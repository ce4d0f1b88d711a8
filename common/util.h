/* Small shared utilities: clocks, paths, progress lines, the seeded RNG. */
#ifndef PS_UTIL_H
#define PS_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

/* Monotonic wall clock in seconds. */
double ps_now_s(void);
/* Wall-clock time as ISO 8601 UTC ("2026-11-26T12:34:56Z"). */
void ps_utc_iso(char *buf, size_t n);

/* Resolve `rel` against the folder of `base_file` (paths inside a config are
 * relative to the config file); absolute paths pass through. */
void ps_path_relative_to(const char *base_file, const char *rel, char *out, size_t n);
/* Folder part of a path ("." when there is none). */
void ps_path_dir(const char *path, char *out, size_t n);
/* Create a folder and its parents; 0 on success. */
int ps_mkdir_p(const char *dir, ps_err *e);
int ps_file_exists(const char *path);
/* Read a whole file (NUL-terminated); caller frees. */
char *ps_file_read(const char *path, size_t *len, ps_err *e);
/* Write a whole file atomically: path.tmp, then rename. */
int ps_file_write_atomic(const char *path, const char *data, size_t len, ps_err *e);

/* A progress line on a terminal (stderr), quiet when stderr is not a tty or
 * PLANSIM_QUIET is set.  Updates are rate-limited. */
typedef struct ps_progress {
    int enabled;
    size_t total;
    double t0, last_s;
    char label[64];
} ps_progress;

void ps_progress_start(ps_progress *p, const char *label, size_t total);
void ps_progress_update(ps_progress *p, size_t done, const char *detail);
void ps_progress_end(ps_progress *p);

/* FNV-1a, 64 bits: the offset basis to start from, then bytes, a u64's
 * eight bytes (little-endian order) or a C string folded in.  Config
 * fingerprints (cached models' names) and string hash tables use it; the
 * weight files' checksum (real/io.c) is the same function. */
#define PS_FNV1A_OFFSET 0xcbf29ce484222325ULL
uint64_t ps_fnv1a(uint64_t h, const void *data, size_t n);
uint64_t ps_fnv1a_u64(uint64_t h, uint64_t v);
uint64_t ps_fnv1a_str(uint64_t h, const char *s);
/* The bits of a double (for hashing it). */
uint64_t ps_double_bits(double d);

/* Version and build facts (common/version.c). */
extern const char ps_version[];
extern const char ps_git_commit[];

#endif
