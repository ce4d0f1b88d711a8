/* Fashion-MNIST from Debian's dataset-fashion-mnist package: the four IDX
 * files (gzip) under /usr/share/datasets/fashion-mnist/, read with zlib.
 *
 * IDX: a big-endian header (magic 2051 = images: count, rows, cols; 2049 =
 * labels: count) then the bytes.  The reader checks the magic, the
 * dimensions, that the file holds exactly what the header says, and that the
 * image and label counts agree; anything else is PS_EINPUT naming the file
 * and the package to install.  PLANSIM_FMNIST_DIR overrides the directory
 * (tests point it at generated fixtures). */
#ifndef PS_REAL_DATA_FMNIST_H
#define PS_REAL_DATA_FMNIST_H

#include <stdint.h>

#include "common/err.h"

#define FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define FMNIST_PACKAGE "dataset-fashion-mnist"
#define FMNIST_CLASSES 10
/* Per-pixel statistics of the training set (x / 255): the usual constants. */
#define FMNIST_MEAN 0.2860
#define FMNIST_STD 0.3530

typedef struct fmnist_set {
    int64_t n;        /* images */
    int rows, cols;   /* 28 x 28 */
    uint8_t *images;  /* n * rows * cols, row-major */
    uint8_t *labels;  /* n, each in [0, 10) */
    char images_path[512], labels_path[512];
} fmnist_set;

/* The directory in use: $PLANSIM_FMNIST_DIR when set and non-empty, else
 * FMNIST_DEFAULT_DIR. */
const char *fmnist_dir(void);

/* One IDX file: images (magic 2051) into *data [n * rows * cols] or labels
 * (magic 2049) into *data [n]; caller frees *data.  rows/cols may be NULL for
 * labels. */
int fmnist_read_idx_images(const char *path, uint8_t **data, int64_t *n, int *rows, int *cols,
                           ps_err *e);
int fmnist_read_idx_labels(const char *path, uint8_t **data, int64_t *n, ps_err *e);

/* split: "train" or "t10k" (also "test").  dir NULL: fmnist_dir().  max_n > 0
 * keeps only the first max_n examples (tests, --quick). */
int fmnist_load(const char *dir, const char *split, int64_t max_n, fmnist_set *s, ps_err *e);
void fmnist_free(fmnist_set *s);

/* Label histogram (counts[10]); PS_EINPUT naming the file when a label is out
 * of range. */
int fmnist_histogram(const fmnist_set *s, int64_t counts[FMNIST_CLASSES], ps_err *e);

/* A float batch: x [n, 1, rows, cols] = (pixel / 255 - mean) / std of the
 * examples idx[0..n) (idx NULL: examples first..first+n), y [n] labels. */
void fmnist_batch_f32(const fmnist_set *s, const int64_t *idx, int64_t first, int64_t n, float *x,
                      int32_t *y);
void fmnist_batch_f64(const fmnist_set *s, const int64_t *idx, int64_t first, int64_t n,
                      double *x, int32_t *y);

#endif
