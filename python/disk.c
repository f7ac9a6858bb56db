/* SPDX-License-Identifier: BSD-3-Clause */
/* vmdkit.Disk: an open image as a binary file object (io.RawIOBase), plus
 * positional I/O, block status, check and resize.  See vmdkit_py.h for the
 * locking rules.
 *
 * The type subclasses _io._RawIOBase (as io.FileIO does) and is
 * registered with io.RawIOBase, so isinstance(disk, io.RawIOBase) holds
 * and io.BufferedReader, shutil.copyfileobj and the IOBase helpers
 * (readline, iteration, __enter__/__exit__, readall's default) work.  Its
 * fields live after the base's instance layout, at DISK_OFFSET (found at
 * import: the base's size is not part of the C API).
 *
 * A backing layer (Disk.backing) is a Disk of its own that borrows a
 * handle owned by the image it belongs to: it keeps that Disk alive, uses
 * its lock, and reads as closed once that Disk is closed. */
#include "vmdkit_py.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

PyTypeObject *vmdkit_disk_type;
PyTypeObject *vmdkit_run_type;
static PyTypeObject *map_iter_type;
static Py_ssize_t disk_offset; /* bytes: where struct fields starts */

struct fields {
  struct vmdk_disk *disk; /* guarded by the lock; NULL once closed */
  PyObject *owner;        /* a backing layer: the Disk that owns the chain
                             (strong reference); else NULL */
  PyThread_type_lock lock; /* an owner's lock; NULL for a layer */
  uint64_t pos;            /* bytes: the file position (GIL) */
  bool closed;             /* close() began (GIL) */
  bool writable;
  bool writethrough; /* flush after every write */
  PyObject *name;    /* str: the path as opened (a layer: as resolved) */
};

static struct fields *F(PyObject *o) {
  return (struct fields *)((char *)o + disk_offset);
}

static PyThread_type_lock lock_of(PyObject *o) {
  struct fields *f = F(o);
  return f->owner ? F(f->owner)->lock : f->lock;
}

void vmdkit_lock(PyThread_type_lock lock) {
  if (PyThread_acquire_lock(lock, NOWAIT_LOCK))
    return;
  Py_BEGIN_ALLOW_THREADS
  PyThread_acquire_lock(lock, WAIT_LOCK);
  Py_END_ALLOW_THREADS
}

/* Whether SELF was closed, or the image a backing layer belongs to. */
static bool is_closed(PyObject *self) {
  struct fields *f = F(self);
  return f->closed || (f->owner && F(f->owner)->closed);
}

static PyObject *closed_error(void) {
  PyErr_SetString(PyExc_ValueError, "I/O operation on closed disk.");
  return NULL;
}

struct vmdk_disk *vmdkit_disk_handle(PyObject *o) {
  struct fields *f = F(o);
  struct vmdk_disk *d = f->closed ? NULL : f->disk;
  if (d && f->owner && (F(f->owner)->closed || !F(f->owner)->disk))
    d = NULL;
  if (!d)
    closed_error();
  return d;
}

PyThread_type_lock vmdkit_disk_lock_of(PyObject *o) {
  if (!PyObject_TypeCheck(o, vmdkit_disk_type)) {
    PyErr_Format(PyExc_TypeError, "expected a path or a vmdkit.Disk, not %.100s",
                 Py_TYPE(o)->tp_name);
    return NULL;
  }
  if (F(o)->closed || (F(o)->owner && F(F(o)->owner)->closed)) {
    closed_error();
    return NULL;
  }
  return lock_of(o);
}

const char *vmdkit_disk_name(PyObject *o) {
  return PyObject_TypeCheck(o, vmdkit_disk_type) && F(o)->name
             ? PyUnicode_AsUTF8(F(o)->name)
             : NULL;
}

/* The open handle of SELF with its lock held (GIL held), or NULL with
 * ValueError set and the lock not held. */
static struct vmdk_disk *lock_open(PyObject *self) {
  if (F(self)->closed) {
    closed_error();
    return NULL;
  }
  PyThread_type_lock lock = lock_of(self);
  vmdkit_lock(lock);
  struct vmdk_disk *d = vmdkit_disk_handle(self);
  if (!d)
    PyThread_release_lock(lock);
  return d;
}

static void unlock(PyObject *self) {
  PyThread_release_lock(lock_of(self));
}

/* Raise the library's error for SELF's file. */
static PyObject *raise_for(PyObject *self) {
  return vmdkit_raise(vmdkit_disk_name(self));
}

static int check_writable(PyObject *self) {
  if (F(self)->closed) {
    closed_error();
    return -1;
  }
  if (!F(self)->writable) {
    PyErr_SetString(vmdkit_unsupported,
                    "Disk not opened for writing (open it with mode='r+')");
    return -1;
  }
  return 0;
}

/* ---- creation and destruction ------------------------------------------ */

static PyObject *disk_alloc(void) {
  return vmdkit_disk_type->tp_alloc(vmdkit_disk_type, 0);
}

PyObject *vmdkit_disk_new(struct vmdk_disk *disk, const char *name,
                          bool writable, bool writethrough) {
  PyObject *o = disk_alloc();
  struct fields *f = o ? F(o) : NULL;
  /* A URL: the library's name for it, without user and password. */
  if (strstr(name, "://"))
    name = vmdk_get_path(disk);
  if (o && !(f->name = PyUnicode_DecodeFSDefault(name)))
    Py_CLEAR(o);
  if (o && !(f->lock = PyThread_allocate_lock())) {
    PyErr_NoMemory();
    Py_CLEAR(o);
  }
  if (!o) {
    Py_BEGIN_ALLOW_THREADS
    vmdk_close(disk);
    Py_END_ALLOW_THREADS
    return NULL;
  }
  f->disk = disk;
  f->writable = writable;
  f->writethrough = writethrough;
  return o;
}

static PyObject *disk_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
  (void)type;
  (void)args;
  (void)kw;
  PyErr_SetString(PyExc_TypeError,
                  "vmdkit.Disk cannot be made directly: use vmdkit.open() "
                  "or vmdkit.create()");
  return NULL;
}

/* close(): release the handle (an owner flushes and closes its image; a
 * layer only lets go).  Waits for a call another thread is making. */
static PyObject *disk_close(PyObject *self, PyObject *unused) {
  (void)unused;
  struct fields *f = F(self);
  if (f->closed)
    Py_RETURN_NONE;
  f->closed = true;
  if (f->owner) { /* a layer: the owner closes the handle */
    f->disk = NULL;
    Py_CLEAR(f->owner);
    Py_RETURN_NONE;
  }
  if (!f->lock || !f->disk)
    Py_RETURN_NONE;
  int r;
  struct vmdk_disk *d;
  vmdkit_lock(f->lock);
  d = f->disk;
  f->disk = NULL;
  Py_BEGIN_ALLOW_THREADS
  r = vmdk_close(d);
  Py_END_ALLOW_THREADS
  PyThread_release_lock(f->lock);
  if (r < 0)
    return raise_for(self);
  Py_RETURN_NONE;
}

static int disk_traverse(PyObject *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self));
  Py_VISIT(F(self)->owner);
  traverseproc base = vmdkit_disk_type->tp_base->tp_traverse;
  return base ? base(self, visit, arg) : 0;
}

static int disk_clear(PyObject *self) {
  Py_CLEAR(F(self)->owner);
  inquiry base = vmdkit_disk_type->tp_base->tp_clear;
  return base ? base(self) : 0;
}

static void disk_dealloc(PyObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  /* IOBase's finalizer calls close() (an owner's image is flushed). */
  if (PyObject_CallFinalizerFromDealloc(self) < 0)
    return; /* resurrected */
  struct fields *f = F(self);
  if (!f->closed) { /* close() failed in the finalizer: still release */
    f->closed = true;
    if (!f->owner && f->disk)
      vmdk_close_discard(f->disk);
    f->disk = NULL;
  }
  Py_CLEAR(f->owner);
  Py_CLEAR(f->name);
  if (f->lock) {
    PyThread_free_lock(f->lock);
    f->lock = NULL;
  }
  tp->tp_base->tp_dealloc(self); /* IOBase: untrack, weakrefs, dict, free */
  Py_DECREF(tp);
}

/* ---- the file object ---------------------------------------------------- */

static PyObject *disk_closed_get(PyObject *self, void *c) {
  (void)c;
  return PyBool_FromLong(is_closed(self));
}

static PyObject *disk_name_get(PyObject *self, void *c) {
  (void)c;
  PyObject *n = F(self)->name;
  return Py_NewRef(n ? n : Py_None);
}

static PyObject *disk_mode_get(PyObject *self, void *c) {
  (void)c;
  return PyUnicode_FromString(F(self)->writable ? "r+" : "r");
}

static PyObject *disk_size_get(PyObject *self, void *c) {
  (void)c;
  struct vmdk_disk *d = lock_open(self);
  if (!d)
    return NULL;
  uint64_t size = vmdk_get_size(d);
  unlock(self);
  return PyLong_FromUnsignedLongLong(size);
}

static PyObject *disk_readable(PyObject *self, PyObject *unused) {
  (void)unused;
  if (is_closed(self))
    return closed_error();
  Py_RETURN_TRUE;
}

static PyObject *disk_writable(PyObject *self, PyObject *unused) {
  (void)unused;
  if (is_closed(self))
    return closed_error();
  return PyBool_FromLong(F(self)->writable);
}

static PyObject *disk_seekable(PyObject *self, PyObject *unused) {
  return disk_readable(self, unused);
}

/* Read up to N bytes at OFF (clipped to the disk's end) into BUF; the
 * number read, or -1 (Python error set).  Lock held by the caller, GIL
 * held on entry and exit. */
static Py_ssize_t read_at(PyObject *self, struct vmdk_disk *d, char *buf,
                          Py_ssize_t n, uint64_t off) {
  uint64_t size = vmdk_get_size(d);
  if (off >= size || n <= 0)
    return 0;
  if ((uint64_t)n > size - off)
    n = (Py_ssize_t)(size - off);
  int r;
  Py_BEGIN_ALLOW_THREADS
  r = vmdk_pread(d, buf, (size_t)n, off);
  Py_END_ALLOW_THREADS
  if (r < 0) {
    raise_for(self);
    return -1;
  }
  return n;
}

/* A bytes object of up to N bytes read at OFF (N < 0: to the end);
 * advances the position when ADVANCE. */
static PyObject *read_bytes(PyObject *self, Py_ssize_t n, uint64_t off,
                            bool advance) {
  struct vmdk_disk *d = lock_open(self);
  if (!d)
    return NULL;
  uint64_t size = vmdk_get_size(d);
  uint64_t left = off < size ? size - off : 0;
  if (n < 0 || (uint64_t)n > left)
    n = left > (uint64_t)PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : (Py_ssize_t)left;
  PyObject *b = PyBytes_FromStringAndSize(NULL, n);
  Py_ssize_t got = b ? read_at(self, d, PyBytes_AS_STRING(b), n, off) : -1;
  unlock(self);
  if (got < 0) {
    Py_XDECREF(b);
    return NULL;
  }
  if (advance)
    F(self)->pos = off + (uint64_t)got;
  return b;
}

static PyObject *disk_read(PyObject *self, PyObject *args) {
  Py_ssize_t n = -1;
  if (!PyArg_ParseTuple(args, "|n:read", &n))
    return NULL;
  return read_bytes(self, n, F(self)->pos, true);
}

static PyObject *disk_readall(PyObject *self, PyObject *unused) {
  (void)unused;
  return read_bytes(self, -1, F(self)->pos, true);
}

static PyObject *disk_readinto(PyObject *self, PyObject *args) {
  Py_buffer view;
  if (!PyArg_ParseTuple(args, "w*:readinto", &view))
    return NULL;
  struct vmdk_disk *d = lock_open(self);
  Py_ssize_t got = -1;
  if (d) {
    got = read_at(self, d, view.buf, view.len, F(self)->pos);
    unlock(self);
  }
  PyBuffer_Release(&view);
  if (got < 0)
    return NULL;
  F(self)->pos += (uint64_t)got;
  return PyLong_FromSsize_t(got);
}

/* Write the N bytes at BUF at OFF: what fits before the end of the disk
 * (a short count, as a block device gives); ENOSPC when nothing fits.
 * Returns the count or -1 (Python error set). */
static Py_ssize_t write_at(PyObject *self, const char *buf, Py_ssize_t n,
                           uint64_t off) {
  if (check_writable(self) < 0)
    return -1;
  struct vmdk_disk *d = lock_open(self);
  if (!d)
    return -1;
  uint64_t size = vmdk_get_size(d);
  if (n > 0 && off >= size) {
    unlock(self);
    vmdkit_raise_errno(ENOSPC, vmdkit_disk_name(self),
                       "%s: write at offset %llu: past the end of the disk "
                       "(%llu bytes)",
                       vmdkit_disk_name(self), (unsigned long long)off,
                       (unsigned long long)size);
    return -1;
  }
  if (n > 0 && (uint64_t)n > size - off)
    n = (Py_ssize_t)(size - off);
  int r = 0;
  bool wt = F(self)->writethrough;
  Py_BEGIN_ALLOW_THREADS
  if (n > 0)
    r = vmdk_pwrite(d, buf, (size_t)n, off);
  if (r == 0 && n > 0 && wt)
    r = vmdk_flush(d);
  Py_END_ALLOW_THREADS
  if (r < 0)
    raise_for(self);
  unlock(self);
  return r < 0 ? -1 : n;
}

static PyObject *disk_write(PyObject *self, PyObject *args) {
  Py_buffer view;
  if (!PyArg_ParseTuple(args, "y*:write", &view))
    return NULL;
  Py_ssize_t n = write_at(self, view.buf, view.len, F(self)->pos);
  PyBuffer_Release(&view);
  if (n < 0)
    return NULL;
  F(self)->pos += (uint64_t)n;
  return PyLong_FromSsize_t(n);
}

static PyObject *disk_seek(PyObject *self, PyObject *args) {
  long long offset;
  int whence = SEEK_SET;
  if (!PyArg_ParseTuple(args, "L|i:seek", &offset, &whence))
    return NULL;
  struct vmdk_disk *d = lock_open(self);
  if (!d)
    return NULL;
  uint64_t size = vmdk_get_size(d);
  unlock(self);
  long long base;
  switch (whence) {
  case SEEK_SET:
    base = 0;
    break;
  case SEEK_CUR:
    base = (long long)F(self)->pos;
    break;
  case SEEK_END:
    base = (long long)size;
    break;
  default:
    PyErr_Format(PyExc_ValueError,
                 "invalid whence (%d, should be 0, 1 or 2)", whence);
    return NULL;
  }
  if ((offset < 0 && base + offset < 0) ||
      (offset > 0 && offset > LLONG_MAX - base)) {
    PyErr_Format(PyExc_ValueError, "seek to %lld%+lld: outside 0..2^63",
                 base, offset);
    return NULL;
  }
  F(self)->pos = (uint64_t)(base + offset);
  return PyLong_FromUnsignedLongLong(F(self)->pos);
}

static PyObject *disk_tell(PyObject *self, PyObject *unused) {
  (void)unused;
  if (is_closed(self))
    return closed_error();
  return PyLong_FromUnsignedLongLong(F(self)->pos);
}

/* Run OP(D, ARG) on SELF's handle with its lock held and the GIL
 * released, followed by a flush when the Disk writes through and
 * THEN_FLUSH; WRITE: SELF must be writable.  None, or NULL with the error
 * raised. */
static PyObject *run_op(PyObject *self, bool write, bool then_flush,
                        int (*op)(struct vmdk_disk *, const void *),
                        const void *arg) {
  if (write && check_writable(self) < 0)
    return NULL;
  struct vmdk_disk *d = lock_open(self);
  if (!d)
    return NULL;
  int r;
  bool flush = then_flush && F(self)->writethrough;
  Py_BEGIN_ALLOW_THREADS
  r = op(d, arg);
  if (r == 0 && flush)
    r = vmdk_flush(d);
  Py_END_ALLOW_THREADS
  if (r < 0)
    raise_for(self);
  unlock(self);
  if (r < 0)
    return NULL;
  Py_RETURN_NONE;
}

static int op_flush(struct vmdk_disk *d, const void *arg) {
  (void)arg;
  return vmdk_flush(d);
}

static PyObject *disk_flush(PyObject *self, PyObject *unused) {
  (void)unused;
  if (!F(self)->writable) { /* nothing to flush; closed is still an error */
    if (is_closed(self))
      return closed_error();
    Py_RETURN_NONE;
  }
  return run_op(self, true, false, op_flush, NULL);
}

/* ---- positional I/O, zeroing, resizing ---------------------------------- */

static PyObject *disk_pread(PyObject *self, PyObject *args) {
  Py_ssize_t n;
  unsigned long long off;
  if (!PyArg_ParseTuple(args, "nK:pread", &n, &off))
    return NULL;
  if (n < 0) {
    PyErr_SetString(PyExc_ValueError, "negative length");
    return NULL;
  }
  return read_bytes(self, n, off, false);
}

static PyObject *disk_pwrite(PyObject *self, PyObject *args) {
  Py_buffer view;
  unsigned long long off;
  if (!PyArg_ParseTuple(args, "y*K:pwrite", &view, &off))
    return NULL;
  Py_ssize_t n = write_at(self, view.buf, view.len, off);
  PyBuffer_Release(&view);
  return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

struct range {
  unsigned long long off, len;
};

static int op_zero(struct vmdk_disk *d, const void *arg) {
  const struct range *r = arg;
  return vmdk_zero(d, r->len, r->off);
}

static PyObject *disk_zero(PyObject *self, PyObject *args) {
  struct range r;
  if (!PyArg_ParseTuple(args, "KK:zero", &r.off, &r.len))
    return NULL;
  return run_op(self, true, true, op_zero, &r);
}

struct new_size {
  unsigned long long size;
  int shrink;
};

static int op_resize(struct vmdk_disk *d, const void *arg) {
  const struct new_size *n = arg;
  return vmdk_resize(d, n->size, n->shrink);
}

static PyObject *disk_resize(PyObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"size", "shrink", NULL};
  struct new_size n = {0, 0};
  if (!PyArg_ParseTupleAndKeywords(args, kw, "K|p:resize", kwlist, &n.size,
                                   &n.shrink))
    return NULL;
  return run_op(self, true, false, op_resize, &n);
}

/* ---- info() ------------------------------------------------------------- */

/* D[KEY] = V (a new reference, stolen); V NULL fails. */
static int put(PyObject *d, const char *key, PyObject *v) {
  if (!v)
    return -1;
  int r = PyDict_SetItemString(d, key, v);
  Py_DECREF(v);
  return r;
}

static int put_str(PyObject *d, const char *key, const char *s) {
  if (!s)
    return put(d, key, Py_NewRef(Py_None));
  return put(d, key, PyUnicode_DecodeFSDefault(s));
}

static int put_u64(PyObject *d, const char *key, uint64_t v) {
  return put(d, key, PyLong_FromUnsignedLongLong(v));
}

static int put_bool(PyObject *d, const char *key, int v) {
  return put(d, key, PyBool_FromLong(v != 0));
}

static PyObject *extent_dict(const struct vmdk_extent_info *e) {
  PyObject *x = PyDict_New();
  if (!x || put_u64(x, "virtual-size", e->size_bytes) < 0 ||
      put_str(x, "filename", e->filename) < 0 ||
      (e->grain_bytes && put_u64(x, "cluster-size", e->grain_bytes) < 0) ||
      put_str(x, "format", e->type) < 0 ||
      put_bool(x, "compressed", e->compressed) < 0 ||
      put_str(x, "type", e->type) < 0 || put_str(x, "access", e->access) < 0 ||
      (e->grain_bytes && (put_u64(x, "version", e->version) < 0 ||
                          put_bool(x, "zeroed-grain", e->zeroed_grain) < 0)) ||
      (e->stream && (put_str(x, "stream", e->stream) < 0 ||
                     put_u64(x, "stream-grains", e->stream_grains) < 0)) ||
      (e->stream_damage && put_str(x, "stream-damage", e->stream_damage) < 0)) {
    Py_XDECREF(x);
    return NULL;
  }
  return x;
}

/* The path a parent link HINT names for an image opened as CHILD (as
 * qemu-img shows the full backing filename): HINT when absolute, else
 * HINT in CHILD's folder.  A new str, or NULL. */
static PyObject *layer_name(PyObject *child, const char *hint) {
  const char *c = PyUnicode_AsUTF8(child);
  if (!c)
    return NULL;
  const char *slash = strrchr(c, '/');
  if (hint[0] == '/' || !slash)
    return PyUnicode_DecodeFSDefault(hint);
  size_t n = (size_t)(slash - c) + 1 + strlen(hint) + 1;
  char *p = malloc(n);
  if (!p)
    return PyErr_NoMemory();
  snprintf(p, n, "%.*s/%s", (int)(slash - c), c, hint);
  PyObject *o = PyUnicode_DecodeFSDefault(p);
  free(p);
  return o;
}

/* The dict `vmdkit info --output=json` prints for one image.  Lock held,
 * GIL held: the info's strings are the handle's until its next call. */
static PyObject *info_dict(PyObject *self, struct vmdk_disk *d) {
  struct vmdk_info info, binfo;
  int r, br = -1;
  struct vmdk_disk *bd;
  Py_BEGIN_ALLOW_THREADS
  r = vmdk_get_info(d, &info);
  bd = vmdk_get_backing(d);
  if (r == 0 && bd)
    br = vmdk_get_info(bd, &binfo);
  Py_END_ALLOW_THREADS
  if (r < 0)
    return raise_for(self);
  PyObject *x = PyDict_New(), *full = NULL;
  if (!x)
    return NULL;
  if (info.parent_hint && br == 0 && put_str(x, "backing-filename-format",
                                             binfo.format) < 0)
    goto fail;
  if (put_u64(x, "virtual-size", info.size_bytes) < 0 ||
      PyDict_SetItemString(x, "filename", F(self)->name) < 0 ||
      (info.cluster_bytes && put_u64(x, "cluster-size", info.cluster_bytes) < 0) ||
      put_str(x, "format", info.format) < 0 ||
      put_u64(x, "actual-size", info.actual_bytes) < 0)
    goto fail;
  if (info.format && strcmp(info.format, "vmdk") == 0) {
    PyObject *fs = PyDict_New(), *data = PyDict_New(), *ext = PyList_New(0);
    if (put(x, "format-specific", fs) < 0 || !data || !ext ||
        put_str(fs, "type", "vmdk") < 0 || put(fs, "data", Py_NewRef(data)) < 0 ||
        put_u64(data, "cid", info.cid) < 0 ||
        put_u64(data, "parent-cid", info.parent_cid) < 0 ||
        put_str(data, "create-type", info.create_type) < 0 ||
        (info.adapter_type && put_str(data, "adapter-type", info.adapter_type) < 0) ||
        (info.hw_version && put_str(data, "hw-version", info.hw_version) < 0) ||
        (info.parent_hint &&
         put_str(data, "parent-filename-hint", info.parent_hint) < 0) ||
        put(data, "extents", Py_NewRef(ext)) < 0) {
      Py_XDECREF(data);
      Py_XDECREF(ext);
      goto fail;
    }
    Py_DECREF(data);
    for (size_t i = 0; i < info.n_extents; i++) {
      PyObject *e = extent_dict(&info.extents[i]);
      if (!e || PyList_Append(ext, e) < 0) {
        Py_XDECREF(e);
        Py_DECREF(ext);
        goto fail;
      }
      Py_DECREF(e);
    }
    Py_DECREF(ext);
  }
  if (info.parent_hint) {
    if (!(full = layer_name(F(self)->name, info.parent_hint)) ||
        PyDict_SetItemString(x, "full-backing-filename", full) < 0 ||
        put_str(x, "backing-filename", info.parent_hint) < 0)
      goto fail;
    Py_CLEAR(full);
  }
  if (put_bool(x, "dirty-flag", info.dirty) < 0)
    goto fail;
  return x;
fail:
  Py_XDECREF(full);
  Py_DECREF(x);
  return NULL;
}

static PyObject *disk_info(PyObject *self, PyObject *unused) {
  (void)unused;
  struct vmdk_disk *d = lock_open(self);
  if (!d)
    return NULL;
  PyObject *x = info_dict(self, d);
  unlock(self);
  return x;
}

/* The backing layer as a Disk (a new object each time), or None. */
static PyObject *disk_backing_get(PyObject *self, void *c) {
  (void)c;
  struct vmdk_disk *d = lock_open(self);
  if (!d)
    return NULL;
  struct vmdk_info info;
  struct vmdk_disk *bd = vmdk_get_backing(d);
  PyObject *o = NULL;
  if (!bd) {
    o = Py_NewRef(Py_None);
  } else if (vmdk_get_info(d, &info) < 0) {
    raise_for(self);
  } else if ((o = disk_alloc())) {
    struct fields *f = F(o);
    PyObject *owner = F(self)->owner ? F(self)->owner : self;
    f->owner = Py_NewRef(owner);
    f->disk = bd;
    f->name = info.parent_hint ? layer_name(F(self)->name, info.parent_hint)
                               : Py_NewRef(F(self)->name);
    if (!f->name)
      Py_CLEAR(o);
  }
  unlock(self);
  return o;
}

/* ---- check() ------------------------------------------------------------ */

/* Problems or repairs reported through a vmdk_problem_cb, collected
 * without the GIL. */
struct reports {
  char **msg;
  int *kind;
  size_t n, cap;
  bool oom;
};

static void collect(void *opaque, enum vmdk_problem_kind kind,
                    const char *message) {
  struct reports *r = opaque;
  if (r->n == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 16;
    char **m = realloc(r->msg, cap * sizeof *m);
    if (m)
      r->msg = m;
    int *k = m ? realloc(r->kind, cap * sizeof *k) : NULL;
    if (!k) {
      r->oom = true;
      return;
    }
    r->kind = k;
    r->cap = cap;
  }
  if (!(r->msg[r->n] = strdup(message))) {
    r->oom = true;
    return;
  }
  r->kind[r->n++] = kind;
}

static void reports_free(struct reports *r) {
  for (size_t i = 0; i < r->n; i++)
    free(r->msg[i]);
  free(r->msg);
  free(r->kind);
}

static size_t count_kind(const struct reports *r, int kind) {
  size_t n = 0;
  for (size_t i = 0; i < r->n; i++)
    n += r->kind[i] == kind;
  return n;
}

/* [{"kind": "corruption"|"leak", "message": str}, ...] */
static PyObject *reports_list(const struct reports *r) {
  if (r->oom)
    return PyErr_NoMemory();
  PyObject *l = PyList_New(0);
  for (size_t i = 0; l && i < r->n; i++) {
    PyObject *x = PyDict_New();
    if (!x ||
        put_str(x, "kind", r->kind[i] == VMDK_PROBLEM_LEAK ? "leak"
                                                           : "corruption") < 0 ||
        put(x, "message", PyUnicode_DecodeUTF8(r->msg[i], (Py_ssize_t)strlen(r->msg[i]), "replace")) < 0 ||
        PyList_Append(l, x) < 0)
      Py_CLEAR(l);
    Py_XDECREF(x);
  }
  return l;
}

static PyObject *disk_check(PyObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"repair", NULL};
  PyObject *repair_obj = Py_False;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:check", kwlist, &repair_obj))
    return NULL;
  unsigned repair = 0;
  if (PyUnicode_Check(repair_obj)) {
    const char *s = PyUnicode_AsUTF8(repair_obj);
    if (!s)
      return NULL;
    if (strcmp(s, "leaks") == 0)
      repair = VMDK_REPAIR_LEAKS;
    else if (strcmp(s, "all") == 0)
      repair = VMDK_REPAIR_ALL;
    else {
      PyErr_Format(PyExc_ValueError,
                   "repair=%R: expected False, True, 'leaks' or 'all'",
                   repair_obj);
      return NULL;
    }
  } else {
    int t = PyObject_IsTrue(repair_obj);
    if (t < 0)
      return NULL;
    repair = t ? VMDK_REPAIR_ALL : 0;
  }
  if (repair && check_writable(self) < 0)
    return NULL;
  struct vmdk_disk *d = lock_open(self);
  if (!d)
    return NULL;
  struct vmdk_info info;
  struct vmdk_check_result res = {0}, after = {0};
  struct reports problems = {0}, repairs = {0};
  int r;
  PyObject *x = NULL;
  Py_BEGIN_ALLOW_THREADS
  r = vmdk_get_info(d, &info);
  if (r == 0 && strcmp(info.format, "vmdk") != 0 &&
      strcmp(info.format, "raw") != 0) {
    errno = EINVAL;
    r = 1; /* a QEMU format: qemu-img's to check */
  }
  if (r == 0)
    r = vmdk_check(d, &res, collect, &problems);
  if (r == 0 && repair) {
    r = vmdk_repair(d, repair, &after, collect, &repairs);
    /* What is left is listed like the first time. */
    if (r == 0) {
      reports_free(&problems);
      problems = (struct reports){0};
      if (after.corruptions || after.leaks)
        r = vmdk_check(d, &after, collect, &problems);
      res = after;
    }
  }
  if (r == 0)
    r = vmdk_get_info(d, &info);
  Py_END_ALLOW_THREADS
  if (r == 1)
    vmdkit_raise_errno(EINVAL, vmdkit_disk_name(self),
                       "%s: vmdkit checks VMDK images; use qemu-img check "
                       "for a %s image",
                       vmdkit_disk_name(self), info.format);
  else if (r < 0)
    raise_for(self);
  else if ((x = PyDict_New())) {
    PyObject *pl = reports_list(&problems);
    if (put_u64(x, "check-errors", 0) < 0 ||
        (repair && (put_u64(x, "leaks-fixed",
                            count_kind(&repairs, VMDK_PROBLEM_LEAK)) < 0 ||
                    put_u64(x, "corruptions-fixed",
                            count_kind(&repairs, VMDK_PROBLEM_CORRUPT)) < 0)) ||
        put_u64(x, "corruptions", res.corruptions) < 0 ||
        put_u64(x, "leaks", res.leaks) < 0 ||
        put_u64(x, "leaked-bytes", res.leaked_bytes) < 0 ||
        put_u64(x, "total-clusters", res.total_grains) < 0 ||
        put_u64(x, "allocated-clusters", res.allocated_grains) < 0 ||
        PyDict_SetItemString(x, "filename", F(self)->name) < 0 ||
        put_str(x, "format", info.format) < 0 || put(x, "problems", pl) < 0 ||
        (repair && put(x, "repairs", reports_list(&repairs)) < 0))
      Py_CLEAR(x);
  }
  unlock(self);
  reports_free(&problems);
  reports_free(&repairs);
  return x;
}

/* ---- map() -------------------------------------------------------------- */

static PyStructSequence_Field run_fields[] = {
    {"offset", "virtual byte offset of the run"},
    {"length", "bytes"},
    {"type", "'data' (stored data), 'zero' (allocated, reads as zeros) or "
             "'hole' (not allocated in any layer: reads as zeros)"},
    {"depth", "the layer the run comes from: 0 this image, 1 its backing "
              "image, ..."},
    {"file", "the file holding a data run, or None"},
    {"file_offset", "byte offset of the run in FILE when it is stored "
                    "uncompressed and contiguously, else None"},
    {NULL, NULL}};

static PyStructSequence_Desc run_desc = {
    "vmdkit.Run",
    "Run(offset, length, type, depth, file, file_offset): one run of "
    "Disk.map(), as `vmdkit map --output=json` shows it.",
    run_fields, 6};

#define MAP_BATCH 1024 /* runs fetched per block status call */

struct map_iter {
  PyObject_HEAD
  PyObject *disk;      /* the Disk (strong) */
  uint64_t next, end;  /* bytes: what is left to map */
  struct vmdk_run runs[MAP_BATCH];
  size_t n;            /* runs gathered by the last call */
  PyObject *batch;     /* list of Run: the runs not yet returned */
  Py_ssize_t i;        /* the next of BATCH */
};

static int map_collect(void *opaque, const struct vmdk_run *run) {
  struct map_iter *it = opaque;
  it->runs[it->n++] = *run;
  return it->n == MAP_BATCH;
}

static PyObject *run_tuple(const struct vmdk_run *r) {
  PyObject *t = PyStructSequence_New(vmdkit_run_type);
  if (!t)
    return NULL;
  const char *type = (r->flags & VMDK_RUN_DATA)      ? "data"
                     : (r->flags & VMDK_RUN_PRESENT) ? "zero"
                                                      : "hole";
  PyObject *v[6] = {
      PyLong_FromUnsignedLongLong(r->offset),
      PyLong_FromUnsignedLongLong(r->length),
      PyUnicode_FromString(type),
      PyLong_FromLong(r->depth),
      r->file ? PyUnicode_DecodeFSDefault(r->file) : Py_NewRef(Py_None),
      r->file_offset >= 0 ? PyLong_FromLongLong(r->file_offset)
                          : Py_NewRef(Py_None)};
  bool ok = true;
  for (int i = 0; i < 6; i++) {
    ok = ok && v[i];
    if (v[i])
      PyStructSequence_SetItem(t, i, v[i]);
    else
      PyStructSequence_SetItem(t, i, Py_NewRef(Py_None));
  }
  if (!ok)
    Py_CLEAR(t);
  return t;
}

/* The next batch of runs as a list (empty at the end). */
static PyObject *map_batch(struct map_iter *it) {
  if (it->next >= it->end)
    return PyList_New(0);
  struct vmdk_disk *d = lock_open(it->disk);
  if (!d)
    return NULL;
  int r;
  it->n = 0;
  Py_BEGIN_ALLOW_THREADS
  r = vmdk_block_status(d, it->next, it->end - it->next, map_collect, it);
  Py_END_ALLOW_THREADS
  PyObject *l = NULL;
  if (r < 0) {
    raise_for(it->disk);
  } else if (it->n == 0) {
    vmdkit_raise_errno(EIO, vmdkit_disk_name(it->disk),
                       "%s: block status returned no run at offset %llu "
                       "(library bug)",
                       vmdkit_disk_name(it->disk),
                       (unsigned long long)it->next);
  } else if ((l = PyList_New(0))) {
    /* The runs' file names are the handle's: made into str under the
     * lock. */
    for (size_t i = 0; i < it->n && l; i++) {
      struct vmdk_run run = it->runs[i];
      if (run.offset + run.length > it->end)
        run.length = it->end - run.offset;
      PyObject *t = run_tuple(&run);
      if (!t || PyList_Append(l, t) < 0)
        Py_CLEAR(l);
      Py_XDECREF(t);
      it->next = run.offset + run.length;
    }
  }
  unlock(it->disk);
  return l;
}

static PyObject *map_iter_next(PyObject *self) {
  struct map_iter *it = (struct map_iter *)self;
  if (!it->batch || it->i == PyList_GET_SIZE(it->batch)) {
    Py_CLEAR(it->batch);
    it->i = 0;
    if (!(it->batch = map_batch(it)))
      return NULL;
    if (PyList_GET_SIZE(it->batch) == 0)
      return NULL; /* the end: StopIteration */
  }
  return Py_NewRef(PyList_GET_ITEM(it->batch, it->i++));
}

static void map_iter_dealloc(PyObject *self) {
  struct map_iter *it = (struct map_iter *)self;
  PyTypeObject *tp = Py_TYPE(self);
  Py_CLEAR(it->disk);
  Py_CLEAR(it->batch);
  tp->tp_free(self);
  Py_DECREF(tp);
}

static PyObject *disk_map(PyObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"offset", "length", NULL};
  unsigned long long off = 0;
  PyObject *len_obj = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|KO:map", kwlist, &off,
                                   &len_obj))
    return NULL;
  struct vmdk_disk *d = lock_open(self);
  if (!d)
    return NULL;
  uint64_t size = vmdk_get_size(d);
  unlock(self);
  uint64_t end = size;
  if (len_obj != Py_None) {
    unsigned long long len = PyLong_AsUnsignedLongLong(len_obj);
    if (PyErr_Occurred())
      return NULL;
    end = off + len < off || off + len > size ? size : off + len;
  }
  if (off > size) {
    PyErr_Format(PyExc_ValueError, "offset %llu is past the end of the disk "
                 "(%llu bytes)", off, (unsigned long long)size);
    return NULL;
  }
  struct map_iter *it = PyObject_New(struct map_iter, map_iter_type);
  if (!it)
    return NULL;
  it->disk = Py_NewRef(self);
  it->next = off;
  it->end = end;
  it->n = 0;
  it->batch = NULL;
  it->i = 0;
  return (PyObject *)it;
}

/* ---- the type ----------------------------------------------------------- */

static PyObject *disk_repr(PyObject *self) {
  struct fields *f = F(self);
  return PyUnicode_FromFormat("<vmdkit.Disk name=%R mode='%s'%s>",
                              f->name ? f->name : Py_None,
                              f->writable ? "r+" : "r",
                              f->closed ? " closed" : "");
}

#define SIG(name, args) name "(" args ")\n--\n\n"

static PyMethodDef disk_methods[] = {
    {"read", disk_read, METH_VARARGS,
     SIG("read", "$self, size=-1, /")
     "Read up to SIZE bytes at the position (all that is left when SIZE is "
     "negative) and advance it; b'' at the end of the disk."},
    {"readall", disk_readall, METH_NOARGS,
     SIG("readall", "$self, /") "Read from the position to the end."},
    {"readinto", disk_readinto, METH_VARARGS,
     SIG("readinto", "$self, buffer, /")
     "Read into BUFFER (any writable bytes-like object: bytearray, "
     "memoryview, mmap, numpy array) at the position, straight from the "
     "image: no copy, no new object.  Returns the number of bytes read "
     "(fewer than len(BUFFER) only at the end of the disk, 0 there)."},
    {"write", disk_write, METH_VARARGS,
     SIG("write", "$self, data, /")
     "Write DATA (bytes-like) at the position and advance it.  Returns "
     "the bytes written: all of them, or what fits before the end of the "
     "disk (a disk does not grow by writing: see resize()); vmdkit.Error "
     "ENOSPC when none fits."},
    {"seek", disk_seek, METH_VARARGS,
     SIG("seek", "$self, offset, whence=os.SEEK_SET, /")
     "Move the position (SEEK_SET, SEEK_CUR or SEEK_END); past the end is "
     "allowed (reads there return nothing).  Returns the new position."},
    {"tell", disk_tell, METH_NOARGS,
     SIG("tell", "$self, /") "The position, in bytes."},
    {"flush", disk_flush, METH_NOARGS,
     SIG("flush", "$self, /")
     "Make every write so far durable (vmdk_flush: data, then the tables "
     "that point at it).  Does nothing for a read-only disk."},
    {"close", disk_close, METH_NOARGS,
     SIG("close", "$self, /")
     "Flush and close the image.  Calling it again does nothing."},
    {"readable", disk_readable, METH_NOARGS,
     SIG("readable", "$self, /") "True."},
    {"writable", disk_writable, METH_NOARGS,
     SIG("writable", "$self, /") "Whether the disk was opened with mode='r+'."},
    {"seekable", disk_seekable, METH_NOARGS,
     SIG("seekable", "$self, /") "True."},
    {"pread", disk_pread, METH_VARARGS,
     SIG("pread", "$self, length, offset, /")
     "Read LENGTH bytes at OFFSET (fewer at the end of the disk); the "
     "position does not move."},
    {"pwrite", disk_pwrite, METH_VARARGS,
     SIG("pwrite", "$self, data, offset, /")
     "Write DATA at OFFSET, as write() does but without moving the "
     "position.  Returns the bytes written."},
    {"zero", disk_zero, METH_VARARGS,
     SIG("zero", "$self, offset, length, /")
     "Make LENGTH bytes at OFFSET read as zeros without writing zeros where "
     "the format can leave them unallocated.  The range must lie within "
     "the disk."},
    {"resize", (PyCFunction)(void (*)(void))disk_resize,
     METH_VARARGS | METH_KEYWORDS,
     SIG("resize", "$self, size, shrink=False")
     "Change the virtual size to SIZE bytes (rounded up to 512).  "
     "Shrinking needs shrink=True and is refused when the part cut off "
     "holds data of this image's own."},
    {"info", disk_info, METH_NOARGS,
     SIG("info", "$self, /")
     "What `vmdkit info --output=json` prints, as a dict with the same "
     "keys (qemu-img's): 'virtual-size', 'filename', 'format', "
     "'actual-size', 'cluster-size', 'dirty-flag', the backing file's "
     "'backing-filename', 'full-backing-filename', "
     "'backing-filename-format', and for a VMDK 'format-specific' with "
     "its CIDs, create type and extents."},
    {"map", (PyCFunction)(void (*)(void))disk_map, METH_VARARGS | METH_KEYWORDS,
     SIG("map", "$self, offset=0, length=None")
     "An iterator of vmdkit.Run over [OFFSET, OFFSET+LENGTH) (to the end "
     "when LENGTH is None): consecutive runs, each 'data', 'zero' or "
     "'hole', with the layer it comes from and where its bytes are "
     "stored.  Runs are fetched in batches; the disk must stay open."},
    {"check", (PyCFunction)(void (*)(void))disk_check,
     METH_VARARGS | METH_KEYWORDS,
     SIG("check", "$self, repair=False")
     "Check the image's metadata; REPAIR (True or 'all', or 'leaks'; needs "
     "mode='r+') repairs what can be repaired, then checks again.  Returns "
     "the dict of `vmdkit check --output=json` ('corruptions', 'leaks', "
     "'leaked-bytes', 'total-clusters', 'allocated-clusters', with REPAIR "
     "'leaks-fixed' and 'corruptions-fixed') plus 'problems' (and with "
     "REPAIR 'repairs'): lists of {'kind': 'corruption'|'leak', "
     "'message': str}.  Problems found are results, not exceptions."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef disk_getset[] = {
    {"closed", disk_closed_get, NULL,
     "True once close() was called (or the image a backing layer belongs "
     "to was closed).", NULL},
    {"name", disk_name_get, NULL,
     "The image's path, as opened (a URL without its user and password).",
     NULL},
    {"mode", disk_mode_get, NULL, "'r' or 'r+'.", NULL},
    {"size", disk_size_get, NULL, "The virtual size in bytes.", NULL},
    {"backing", disk_backing_get, NULL,
     "The backing (parent) image as a read-only Disk, or None.  It belongs "
     "to this Disk: it reads as closed once this one is closed.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static const char disk_doc[] =
    "An open virtual disk: a binary file object (io.RawIOBase) over the "
    "disk's bytes, as the guest sees them.\n\n"
    "Made by vmdkit.open() and vmdkit.create(); use it in a with statement "
    "or close() it.  read, readinto, write, seek and tell work on a "
    "position as for a file; pread, pwrite and zero take offsets.  Every "
    "call releases the GIL while the library works; calls on one Disk "
    "from several threads run one at a time, calls on different Disks in "
    "parallel.  Errors raise vmdkit.Error (an OSError); I/O on a closed "
    "disk raises ValueError, writing a read-only one "
    "io.UnsupportedOperation.";

int vmdkit_disk_types_init(PyObject *module) {
  PyObject *io = PyImport_ImportModule("_io"), *pyio = NULL, *base = NULL,
           *bases = NULL, *r = NULL;
  int ret = -1;
  if (!io || !(base = PyObject_GetAttrString(io, "_RawIOBase")) ||
      !PyType_Check(base))
    goto out;
  disk_offset = ((PyTypeObject *)base)->tp_basicsize;
  disk_offset = (disk_offset + (Py_ssize_t)_Alignof(max_align_t) - 1) /
                (Py_ssize_t)_Alignof(max_align_t) *
                (Py_ssize_t)_Alignof(max_align_t);
  PyType_Slot slots[] = {
      {Py_tp_doc, (void *)disk_doc},
      {Py_tp_new, disk_new},
      {Py_tp_dealloc, disk_dealloc},
      {Py_tp_traverse, disk_traverse},
      {Py_tp_clear, disk_clear},
      {Py_tp_repr, disk_repr},
      {Py_tp_methods, disk_methods},
      {Py_tp_getset, disk_getset},
      {0, NULL}};
  PyType_Spec spec = {
      "vmdkit.Disk", (int)(disk_offset + (Py_ssize_t)sizeof(struct fields)), 0,
      Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, slots};
  if (!(bases = PyTuple_Pack(1, base)) ||
      !(vmdkit_disk_type = (PyTypeObject *)PyType_FromSpecWithBases(&spec, bases)))
    goto out;
  PyType_Slot iter_slots[] = {
      {Py_tp_doc, (void *)"An iterator of vmdkit.Run (Disk.map())."},
      {Py_tp_dealloc, map_iter_dealloc},
      {Py_tp_iter, PyObject_SelfIter},
      {Py_tp_iternext, map_iter_next},
      {0, NULL}};
  PyType_Spec iter_spec = {"vmdkit.MapIterator", (int)sizeof(struct map_iter),
                           0, Py_TPFLAGS_DEFAULT, iter_slots};
  if (!(map_iter_type = (PyTypeObject *)PyType_FromSpec(&iter_spec)) ||
      !(vmdkit_run_type = PyStructSequence_NewType(&run_desc)))
    goto out;
  /* isinstance(disk, io.RawIOBase), as io registers FileIO. */
  if (!(pyio = PyImport_ImportModule("io")))
    goto out;
  PyObject *raw = pyio ? PyObject_GetAttrString(pyio, "RawIOBase") : NULL;
  if (!raw ||
      !(r = PyObject_CallMethod(raw, "register", "O", vmdkit_disk_type))) {
    Py_XDECREF(raw);
    goto out;
  }
  Py_DECREF(raw);
  if (PyModule_AddObjectRef(module, "Disk", (PyObject *)vmdkit_disk_type) < 0 ||
      PyModule_AddObjectRef(module, "Run", (PyObject *)vmdkit_run_type) < 0)
    goto out;
  ret = 0;
out:
  Py_XDECREF(r);
  Py_XDECREF(bases);
  Py_XDECREF(base);
  Py_XDECREF(io);
  Py_XDECREF(pyio);
  return ret;
}
