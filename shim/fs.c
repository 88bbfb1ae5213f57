/* Portable filesystem helpers for havm: clone, sparse copy, free space. See havm_fs.h for the contract. */
#define _GNU_SOURCE
#include "havm_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#ifdef __APPLE__
#include <sys/attr.h>
#include <sys/clonefile.h>
#else
#include <sys/ioctl.h>
#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif
#endif

#define COPY_CHUNK (1u << 20) /* 1 MiB reads */
#define ZERO_BLOCK 4096u      /* granularity of hole detection */

static int32_t fail(char *err, uint32_t errLen, int code, const char *fmt, ...) {
  if (err && errLen > 0) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errLen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (uint32_t)n < errLen && code != 0) {
      snprintf(err + n, errLen - (uint32_t)n, ": %s", strerror(code));
    }
  }
  return code > 0 ? -code : -EIO;
}

static void clear(char *err, uint32_t errLen) {
  if (err && errLen > 0) err[0] = '\0';
}

/* Errors that mean "this filesystem (pair) cannot clone", not "something is wrong". */
static int clone_unsupported(int e) {
  return e == EOPNOTSUPP || e == ENOTSUP || e == ENOTTY || e == EXDEV || e == EINVAL || e == ENOSYS;
}

int32_t havm_fs_clone(const char *src, const char *dst, char *err, uint32_t errLen) {
  clear(err, errLen);
#ifdef __APPLE__
  if (clonefile(src, dst, CLONE_NOFOLLOW) == 0) return HAVM_FS_OK;
  int e = errno;
  if (clone_unsupported(e)) return HAVM_FS_UNSUPPORTED;
  return fail(err, errLen, e, "clonefile %s -> %s", src, dst);
#else
  int s = open(src, O_RDONLY | O_CLOEXEC);
  if (s < 0) return fail(err, errLen, errno, "open %s", src);
  struct stat st;
  if (fstat(s, &st) != 0) {
    int e = errno;
    close(s);
    return fail(err, errLen, e, "stat %s", src);
  }
  int d = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777);
  if (d < 0) {
    int e = errno;
    close(s);
    return fail(err, errLen, e, "create %s", dst);
  }
  if (ioctl(d, FICLONE, s) != 0) {
    int e = errno;
    close(d);
    close(s);
    unlink(dst);
    if (clone_unsupported(e)) return HAVM_FS_UNSUPPORTED;
    return fail(err, errLen, e, "clone %s -> %s", src, dst);
  }
  close(s);
  if (close(d) != 0) {
    int e = errno;
    unlink(dst);
    return fail(err, errLen, e, "close %s", dst);
  }
  return HAVM_FS_OK;
#endif
}

static int all_zero(const unsigned char *p, size_t n) {
  /* p[0] == 0 and every byte equals its successor: memcmp is vectorised by libc. */
  return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static int write_all(int fd, const unsigned char *buf, size_t len, uint64_t at) {
  while (len > 0) {
    ssize_t w = pwrite(fd, buf, len, (off_t)at);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return EIO;
    buf += w;
    len -= (size_t)w;
    at += (uint64_t)w;
  }
  return 0;
}

/* Copy [from, to) that the source reports as data, skipping all-zero blocks. */
static int32_t copy_data(int src, int dst, unsigned char *buf, uint64_t from, uint64_t to, uint64_t *written,
                         char *err, uint32_t errLen, int *eof) {
  uint64_t pos = from;
  while (pos < to) {
    size_t want = (size_t)((to - pos) < COPY_CHUNK ? (to - pos) : COPY_CHUNK);
    ssize_t got = pread(src, buf, want, (off_t)pos);
    if (got < 0) {
      if (errno == EINTR) continue;
      return fail(err, errLen, errno, "read at offset %llu", (unsigned long long)pos);
    }
    if (got == 0) {
      *eof = 1;
      return HAVM_FS_OK;
    }
    /* Coalesce runs of non-zero blocks into one write each. */
    size_t i = 0, n = (size_t)got;
    while (i < n) {
      size_t blk = n - i < ZERO_BLOCK ? n - i : ZERO_BLOCK;
      if (all_zero(buf + i, blk)) {
        i += blk;
        continue;
      }
      size_t start = i;
      while (i < n) {
        blk = n - i < ZERO_BLOCK ? n - i : ZERO_BLOCK;
        if (all_zero(buf + i, blk)) break;
        i += blk;
      }
      int e = write_all(dst, buf + start, i - start, pos + start);
      if (e != 0) return fail(err, errLen, e, "write at offset %llu", (unsigned long long)(pos + start));
      *written += i - start;
    }
    pos += (uint64_t)got;
  }
  return HAVM_FS_OK;
}

int32_t havm_fs_copy_sparse_range(int32_t srcFd, int32_t dstFd, uint64_t offset, uint64_t length,
                                  uint64_t *dataBytes, char *err, uint32_t errLen) {
  clear(err, errLen);
  uint64_t written = 0;
  if (dataBytes) *dataBytes = 0;
  unsigned char *buf = malloc(COPY_CHUNK);
  if (!buf) return fail(err, errLen, ENOMEM, "allocate copy buffer");
  uint64_t end = offset + length;
  uint64_t pos = offset;
  int32_t rc = HAVM_FS_OK;
  int eof = 0;
  while (pos < end && !eof) {
    off_t data = lseek(srcFd, (off_t)pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break; /* only a hole remains */
      if (errno == EINVAL || errno == ENOTSUP) {
        data = (off_t)pos; /* no SEEK_DATA here: treat all as data, zero blocks are still skipped */
      } else {
        rc = fail(err, errLen, errno, "seek data at offset %llu", (unsigned long long)pos);
        break;
      }
    }
    if ((uint64_t)data >= end) break;
    off_t hole = lseek(srcFd, data, SEEK_HOLE);
    uint64_t stop = (hole < 0 || (uint64_t)hole > end) ? end : (uint64_t)hole;
    if (stop <= (uint64_t)data) stop = end;
    rc = copy_data(srcFd, dstFd, buf, (uint64_t)data, stop, &written, err, errLen, &eof);
    if (rc != HAVM_FS_OK) break;
    pos = stop;
  }
  free(buf);
  if (dataBytes) *dataBytes = written;
  return rc;
}

int32_t havm_fs_free_bytes(const char *path, uint64_t *freeBytes, char *err, uint32_t errLen) {
  clear(err, errLen);
  struct statvfs s;
  if (statvfs(path, &s) != 0) return fail(err, errLen, errno, "statvfs %s", path);
  if (freeBytes) *freeBytes = (uint64_t)s.f_bavail * (uint64_t)s.f_frsize;
  return HAVM_FS_OK;
}

int32_t havm_fs_allocated_bytes(int32_t fd, uint64_t *allocated, char *err, uint32_t errLen) {
  clear(err, errLen);
  struct stat st;
  if (fstat(fd, &st) != 0) return fail(err, errLen, errno, "fstat");
  if (allocated) *allocated = (uint64_t)st.st_blocks * 512u;
  return HAVM_FS_OK;
}
