/* A byte-level text corpus from Debian's fortunes packages (fortunes,
 * fortunes-min): every plain text file in /usr/share/games/fortunes, read in
 * name order (the *.dat index files, the *.u8 symlinks and any other
 * symlink, sub-folder or non-regular file are skipped).  A fortune file is
 * records separated by lines holding only "%"; each separator line becomes
 * an empty line, so records stay apart.  Every 10th record (record index
 * mod 10 == 9, counted over the whole corpus) goes to the validation split,
 * the rest to training: the two splits share the corpus's mix of files.
 *
 * Tokens are bytes (vocabulary 256).  A batch is B random windows of T + 1
 * bytes from one split, drawn from an rt_rng: tokens = bytes [0, T),
 * targets = bytes [1, T + 1) — deterministic for a seed.
 *
 * PLANSIM_TEXT_DIR overrides the directory (tests with fixtures); a folder
 * with no usable file is PS_EINPUT "no text corpus under DIR: install the
 * Debian package fortunes". */
#ifndef PS_REAL_DATA_TEXT_H
#define PS_REAL_DATA_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "real/rt.h"

#define TEXT_DEFAULT_DIR "/usr/share/games/fortunes"
#define TEXT_PACKAGE "fortunes"
#define TEXT_VOCAB 256

typedef enum { TEXT_TRAIN = 0, TEXT_VAL = 1 } text_split;

typedef struct text_corpus {
    uint8_t *data[2]; /* TEXT_TRAIN, TEXT_VAL bytes */
    size_t n[2];
    int nfiles;
    int64_t nrecords;
    char dir[512];
} text_corpus;

/* $PLANSIM_TEXT_DIR when set and non-empty, else TEXT_DEFAULT_DIR. */
const char *text_dir(void);

/* dir NULL: text_dir().  Fails (PS_EINPUT) when no file is readable or a
 * split would be shorter than 64 bytes. */
int text_load(const char *dir, text_corpus *c, ps_err *e);
void text_free(text_corpus *c);

/* B windows of T + 1 bytes from split s: tokens[b * T + t], targets likewise
 * (I32, host arrays of B * T).  PS_EINPUT when the split is shorter than
 * T + 1. */
int text_batch(const text_corpus *c, text_split s, rt_rng *r, int64_t B, int64_t T,
               int32_t *tokens, int32_t *targets, ps_err *e);

#endif
