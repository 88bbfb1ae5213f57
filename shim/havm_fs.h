/* havm's portable filesystem helpers (Linux gcc, macOS clang). Part of libhavm; included by havm.h.
 *
 * Conventions: every function returns an int32 status and fills the caller's error buffer
 * (err, errLen; always NUL-terminated when errLen > 0) on failure.
 *   HAVM_FS_OK (0)           success
 *   HAVM_FS_UNSUPPORTED (1)  the filesystem cannot do it (clone): use another way, nothing was created
 *   negative                 -errno of the failing call
 * File descriptors are plain POSIX descriptors opened by the caller (Bun's fs.openSync gives those).
 */
#ifndef HAVM_FS_H
#define HAVM_FS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAVM_FS_OK 0
#define HAVM_FS_UNSUPPORTED 1

/* Make dst (which must not exist) a copy-on-write clone of src: FICLONE on Linux (btrfs, XFS),
 * clonefile(2) on macOS (APFS). Returns HAVM_FS_UNSUPPORTED, with no dst left behind, where the
 * filesystem cannot clone (ext4, tmpfs, different filesystems). */
int32_t havm_fs_clone(const char *src, const char *dst, char *err, uint32_t errLen);

/* Copy [offset, offset+length) of srcFd to the same offsets of dstFd, writing only data: holes of the
 * source (SEEK_DATA/SEEK_HOLE) are skipped and so are all-zero 4 KiB blocks, so dst stays sparse.
 * dst must already have its final size (ftruncate) so skipped ranges read back as zeros.
 * *dataBytes receives the number of bytes actually written. */
int32_t havm_fs_copy_sparse_range(int32_t srcFd, int32_t dstFd, uint64_t offset, uint64_t length,
                                  uint64_t *dataBytes, char *err, uint32_t errLen);

/* Bytes available to an unprivileged user on the filesystem holding path (statvfs f_bavail * f_frsize). */
int32_t havm_fs_free_bytes(const char *path, uint64_t *freeBytes, char *err, uint32_t errLen);

/* Bytes actually allocated on disk for fd (st_blocks * 512): what a sparse file really costs. */
int32_t havm_fs_allocated_bytes(int32_t fd, uint64_t *allocated, char *err, uint32_t errLen);

#ifdef __cplusplus
}
#endif

#endif /* HAVM_FS_H */
