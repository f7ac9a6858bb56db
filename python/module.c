/* SPDX-License-Identifier: BSD-3-Clause */
/* The vmdkit Python module: open, create, convert, compare, commit,
 * rebase, and vmdkit.Error.  A thin adapter over include/vmdkit.h (see
 * vmdkit_py.h for the threading rules; the Disk type is in disk.c). */
#include "vmdkit_py.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

PyObject *vmdkit_error_type;
PyObject *vmdkit_unsupported;

/* ---- errors ------------------------------------------------------------- */

/* Raise vmdkit.Error(ERR, MSG less a leading "FILENAME: ", FILENAME)
 * with the attribute message = MSG. */
static PyObject *raise_msg(int err, const char *msg, const char *filename) {
  /* strerror: the message without a leading "FILENAME: " (OSError's str()
   * adds the file name); the whole line is the attribute "message". */
  const char *text = msg;
  size_t n = filename ? strlen(filename) : 0;
  if (n && strncmp(msg, filename, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
    text = msg + n + 2;
  PyObject *exc =
      filename ? PyObject_CallFunction(vmdkit_error_type, "isO&", err, text,
                                       PyUnicode_DecodeFSDefault, filename)
               : PyObject_CallFunction(vmdkit_error_type, "is", err, text);
  if (!exc)
    return NULL;
  PyObject *m = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
  if (!m || PyObject_SetAttrString(exc, "message", m) < 0) {
    Py_XDECREF(m);
    Py_DECREF(exc);
    return NULL;
  }
  Py_DECREF(m);
  PyErr_SetObject(vmdkit_error_type, exc);
  Py_DECREF(exc);
  return NULL;
}

PyObject *vmdkit_raise(const char *filename) {
  int err = vmdk_get_errno();
  const char *msg = vmdk_get_error();
  if (err == 0)
    err = EIO;
  if (!msg || !*msg)
    msg = strerror(err);
  return raise_msg(err, msg, filename);
}

PyObject *vmdkit_raise_errno(int err, const char *filename, const char *fmt,
                             ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return raise_msg(err, msg, filename);
}

/* A PyArg "O&" converter: None -> NULL, else as PyUnicode_FSConverter
 * (*OUT a bytes object or NULL, released by the caller). */
static int opt_path(PyObject *obj, void *out) {
  if (obj == Py_None) {
    *(PyObject **)out = NULL;
    return 1;
  }
  return PyUnicode_FSConverter(obj, out);
}

/* ---- arguments ---------------------------------------------------------- */

int vmdkit_parse_format(PyObject *obj, int *format, const char **qemu) {
  *format = VMDK_FORMAT_AUTO;
  *qemu = NULL;
  if (!obj || obj == Py_None)
    return 0;
  if (!PyUnicode_Check(obj)) {
    PyErr_Format(PyExc_TypeError, "format must be a str or None, not %.100s",
                 Py_TYPE(obj)->tp_name);
    return -1;
  }
  const char *s = PyUnicode_AsUTF8(obj);
  if (!s)
    return -1;
  if (strcmp(s, "vmdk") == 0)
    *format = VMDK_FORMAT_VMDK;
  else if (strcmp(s, "raw") == 0)
    *format = VMDK_FORMAT_RAW;
  else if (!*s || strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") !=
                      strlen(s)) {
    PyErr_Format(PyExc_ValueError,
                 "format %R: expected 'vmdk', 'raw' or a format qemu-img "
                 "names ('qcow2', 'vhdx', 'vpc', 'vdi', ...)",
                 obj);
    return -1;
  } else
    *qemu = s;
  return 0;
}

struct vmdk_disk *vmdkit_open_image(const char *path, int format,
                                    const char *qemu, unsigned flags) {
  struct vmdk_disk *d;
  Py_BEGIN_ALLOW_THREADS
  d = qemu ? vmdk_open_qemu(path, qemu, flags)
           : vmdk_open_format(path, format, flags);
  Py_END_ALLOW_THREADS
  return d;
}

/* cache= of open(), create() and convert(): the flags and whether every
 * write is flushed, as vmdkit's -t (None: DEFAULT_FLAGS). */
static int parse_cache(PyObject *obj, unsigned default_flags, unsigned *flags,
                       bool *writethrough) {
  *flags = default_flags;
  *writethrough = false;
  if (!obj || obj == Py_None)
    return 0;
  const char *s = PyUnicode_Check(obj) ? PyUnicode_AsUTF8(obj) : NULL;
  if (!s && PyErr_Occurred())
    return -1;
  if (s && strcmp(s, "writeback") == 0)
    *flags = 0;
  else if (s && strcmp(s, "unsafe") == 0)
    *flags = VMDK_OPEN_UNSAFE;
  else if (s && strcmp(s, "none") == 0)
    *flags = VMDK_OPEN_NOCACHE;
  else if (s && strcmp(s, "writethrough") == 0)
    *flags = 0, *writethrough = true;
  else if (s && strcmp(s, "directsync") == 0)
    *flags = VMDK_OPEN_NOCACHE, *writethrough = true;
  else {
    PyErr_Format(PyExc_ValueError,
                 "cache=%R: expected None, 'writeback', 'unsafe', 'none', "
                 "'writethrough' or 'directsync'",
                 obj);
    return -1;
  }
  return 0;
}

/* A path argument: str, bytes or os.PathLike, into *OUT (a bytes object,
 * released by the caller). */
static int path_arg(PyObject *obj, PyObject **out) {
  return PyUnicode_FSConverter(obj, out) ? 0 : -1;
}

/* ---- progress ----------------------------------------------------------- */

int vmdkit_progress_cb(void *opaque, uint64_t done, uint64_t total) {
  struct vmdkit_progress *p = opaque;
  PyGILState_STATE g = PyGILState_Ensure();
  int stop = 0;
  if (p->exc_type) {
    stop = 1;
  } else if (PyErr_CheckSignals() < 0) {
    stop = 1;
  } else if (p->callable) {
    PyObject *r = PyObject_CallFunction(p->callable, "KK",
                                        (unsigned long long)done,
                                        (unsigned long long)total);
    if (!r)
      stop = 1;
    Py_XDECREF(r);
  }
  if (stop && !p->exc_type)
    PyErr_Fetch(&p->exc_type, &p->exc_value, &p->exc_tb);
  PyGILState_Release(g);
  return stop;
}

bool vmdkit_progress_reraise(struct vmdkit_progress *p) {
  if (!p->exc_type)
    return false;
  PyErr_Restore(p->exc_type, p->exc_value, p->exc_tb);
  p->exc_type = p->exc_value = p->exc_tb = NULL;
  return true;
}

static int progress_arg(PyObject *obj, struct vmdkit_progress *p) {
  *p = (struct vmdkit_progress){NULL, NULL, NULL, NULL};
  if (obj && obj != Py_None) {
    if (!PyCallable_Check(obj)) {
      PyErr_SetString(PyExc_TypeError,
                      "progress must be a callable(done, total) or None");
      return -1;
    }
    p->callable = obj;
  }
  return 0;
}

/* After a long call that returned R: raise what cancelled it, or the
 * library's error for FILENAME.  Returns NULL, or None when R is 0. */
static PyObject *long_call_result(int r, struct vmdkit_progress *p,
                                  const char *filename) {
  if (vmdkit_progress_reraise(p))
    return NULL;
  if (r < 0)
    return vmdkit_raise(filename);
  Py_RETURN_NONE;
}

/* ---- open and create ---------------------------------------------------- */

static PyObject *m_open(PyObject *mod, PyObject *args, PyObject *kw) {
  (void)mod;
  static char *kwlist[] = {"path",  "mode",    "format", "confine",
                           "cache", "salvage", NULL};
  PyObject *path = NULL, *fmt_obj = Py_None, *cache_obj = Py_None;
  const char *mode = "r";
  int confine = 0, salvage = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|sOpOp:open", kwlist,
                                   PyUnicode_FSConverter, &path, &mode,
                                   &fmt_obj, &confine, &cache_obj, &salvage))
    return NULL;
  PyObject *ret = NULL;
  int format;
  const char *qemu;
  unsigned flags;
  bool wt;
  bool rw = strcmp(mode, "r+") == 0 || strcmp(mode, "rb+") == 0 ||
            strcmp(mode, "r+b") == 0;
  if (!rw && strcmp(mode, "r") != 0 && strcmp(mode, "rb") != 0) {
    PyErr_Format(PyExc_ValueError,
                 "mode '%s': expected 'r' (read-only) or 'r+' (read-write); "
                 "vmdkit.create() makes new images",
                 mode);
    goto out;
  }
  if (vmdkit_parse_format(fmt_obj, &format, &qemu) < 0 ||
      parse_cache(cache_obj, 0, &flags, &wt) < 0)
    goto out;
  flags |= (rw ? VMDK_OPEN_RDWR : 0) | (confine ? VMDK_OPEN_CONFINE : 0) |
           (salvage ? VMDK_OPEN_SALVAGE : 0);
  const char *p = PyBytes_AS_STRING(path);
  struct vmdk_disk *d = vmdkit_open_image(p, format, qemu, flags);
  if (!d)
    vmdkit_raise(p);
  else
    ret = vmdkit_disk_new(d, p, rw, wt);
out:
  Py_XDECREF(path);
  return ret;
}

/* The create options shared by create() and convert(). */
struct create_args {
  const char *subformat, *adapter_type;
  unsigned hw_version;
  unsigned long long grain_size;
  int zeroed_grain, compression_level, threads;
};

static int fill_create(const struct create_args *a,
                       struct vmdk_create_options *o) {
  if (a->subformat && vmdk_subformat_from_name(a->subformat, &o->subformat) < 0) {
    PyErr_Format(PyExc_ValueError,
                 "subformat '%s': expected monolithicSparse, monolithicFlat, "
                 "twoGbMaxExtentSparse, twoGbMaxExtentFlat, streamOptimized, "
                 "vmfs or raw",
                 a->subformat);
    return -1;
  }
  if (a->grain_size &&
      (a->grain_size % 512 || a->grain_size / 512 > UINT32_MAX)) {
    PyErr_Format(PyExc_ValueError,
                 "grain_size %llu: a power of two of bytes, 4096 to 1 GiB",
                 a->grain_size);
    return -1;
  }
  if (a->threads < 0 || a->compression_level < 0) {
    PyErr_SetString(PyExc_ValueError,
                    "threads and compression_level cannot be negative");
    return -1;
  }
  o->adapter_type = a->adapter_type;
  o->hw_version = a->hw_version;
  o->grain_sectors = (uint32_t)(a->grain_size / 512);
  o->zeroed_grain = a->zeroed_grain;
  o->compression_level = a->compression_level;
  o->threads = (unsigned)a->threads;
  return 0;
}

static PyObject *m_create(PyObject *mod, PyObject *args, PyObject *kw) {
  (void)mod;
  static char *kwlist[] = {"path",         "size",         "subformat",
                           "backing",      "backing_format", "format",
                           "adapter_type", "hw_version",   "grain_size",
                           "zeroed_grain", "compression_level", "threads",
                           "cache",        NULL};
  PyObject *path = NULL, *size_obj = Py_None, *backing = NULL,
           *bfmt_obj = Py_None, *fmt_obj = Py_None, *cache_obj = Py_None;
  struct create_args a = {"monolithicSparse", NULL, 0, 0, 0, 0, 0};
  if (!PyArg_ParseTupleAndKeywords(
          args, kw, "O&|OsO&O$OzIKpiiO:create", kwlist,
          PyUnicode_FSConverter, &path, &size_obj, &a.subformat,
          opt_path, &backing, &bfmt_obj, &fmt_obj,
          &a.adapter_type, &a.hw_version, &a.grain_size, &a.zeroed_grain,
          &a.compression_level, &a.threads, &cache_obj))
    return NULL;
  PyObject *ret = NULL;
  struct vmdk_create_options o = {0};
  int format, bformat;
  const char *qemu, *bqemu;
  unsigned flags;
  bool wt;
  if (size_obj != Py_None) {
    o.size_bytes = PyLong_AsUnsignedLongLong(size_obj);
    if (PyErr_Occurred())
      goto out;
  } else if (!backing) {
    PyErr_SetString(PyExc_TypeError,
                    "create() needs a size (or a backing image to take it "
                    "from)");
    goto out;
  }
  if (fill_create(&a, &o) < 0 || vmdkit_parse_format(fmt_obj, &format, &qemu) < 0 ||
      vmdkit_parse_format(bfmt_obj, &bformat, &bqemu) < 0 ||
      parse_cache(cache_obj, 0, &flags, &wt) < 0)
    goto out;
  if (bqemu) {
    PyErr_SetString(PyExc_ValueError,
                    "backing_format: a VMDK's backing file is 'vmdk' or 'raw'");
    goto out;
  }
  if (format == VMDK_FORMAT_RAW)
    o.subformat = VMDK_SUBFORMAT_RAW;
  o.backing_file = backing ? PyBytes_AS_STRING(backing) : NULL;
  o.backing_format = bformat;
  const char *p = PyBytes_AS_STRING(path);
  struct vmdk_disk *d;
  Py_BEGIN_ALLOW_THREADS
  d = qemu ? vmdk_create_qemu(p, qemu, &o, flags) : vmdk_create(p, &o, flags);
  Py_END_ALLOW_THREADS
  if (!d)
    vmdkit_raise(p);
  else
    ret = vmdkit_disk_new(d, p, true, wt);
out:
  Py_XDECREF(path);
  Py_XDECREF(backing);
  return ret;
}

/* ---- images given as a path or a Disk ----------------------------------- */

/* An image argument of convert/compare: an open Disk (used under its
 * lock) or a path (opened read-only here, closed by image_done). */
struct image {
  PyObject *disk_obj;        /* the Disk given, or NULL */
  PyThread_type_lock lock;   /* its lock, when this one took it */
  PyObject *path;            /* bytes: the path given, or NULL */
  struct vmdk_disk *d;       /* the handle */
  const char *name;          /* for messages */
};

/* Open (or lock) OBJ; SHARED: a lock already held by another image of
 * the call (not taken again).  0 or -1 (exception set). */
static int image_get(PyObject *obj, int format, const char *qemu,
                     unsigned flags, PyThread_type_lock shared,
                     struct image *im) {
  *im = (struct image){NULL, NULL, NULL, NULL, NULL};
  if (PyObject_TypeCheck(obj, vmdkit_disk_type)) {
    PyThread_type_lock lock = vmdkit_disk_lock_of(obj);
    if (!lock)
      return -1;
    if (lock != shared)
      vmdkit_lock(lock);
    if (!(im->d = vmdkit_disk_handle(obj))) {
      if (lock != shared)
        PyThread_release_lock(lock);
      return -1;
    }
    im->disk_obj = obj;
    im->lock = lock != shared ? lock : NULL;
    im->name = vmdkit_disk_name(obj);
    return 0;
  }
  if (path_arg(obj, &im->path) < 0)
    return -1;
  im->name = PyBytes_AS_STRING(im->path);
  if (!(im->d = vmdkit_open_image(im->name, format, qemu, flags))) {
    vmdkit_raise(im->name);
    Py_CLEAR(im->path);
    return -1;
  }
  return 0;
}

/* Release IM: unlock a Disk, close an image opened here (read-only: a
 * failing close changes nothing on disk). */
static void image_done(struct image *im) {
  if (im->lock)
    PyThread_release_lock(im->lock);
  if (im->path && im->d) {
    Py_BEGIN_ALLOW_THREADS
    vmdk_close(im->d);
    Py_END_ALLOW_THREADS
  }
  Py_CLEAR(im->path);
  *im = (struct image){NULL, NULL, NULL, NULL, NULL};
}

/* ---- convert ------------------------------------------------------------ */

static PyObject *m_convert(PyObject *mod, PyObject *args, PyObject *kw) {
  (void)mod;
  static char *kwlist[] = {
      "src",          "dst",        "format",       "subformat",
      "src_format",   "backing",    "backing_format", "adapter_type",
      "hw_version",   "grain_size", "zeroed_grain", "compression_level",
      "threads",      "cache",      "confine",      "salvage",
      "progress",     NULL};
  PyObject *src = NULL, *dst = NULL, *fmt_obj = Py_None, *sfmt_obj = Py_None,
           *backing = NULL, *bfmt_obj = Py_None, *cache_obj = Py_None,
           *progress_obj = Py_None;
  struct create_args a = {NULL, NULL, 0, 0, 0, 0, 0};
  int confine = 0, salvage = 0;
  if (!PyArg_ParseTupleAndKeywords(
          args, kw, "OO&|Oz$OO&OzIKpiiOppO:convert", kwlist, &src,
          PyUnicode_FSConverter, &dst, &fmt_obj, &a.subformat, &sfmt_obj,
          opt_path, &backing, &bfmt_obj, &a.adapter_type,
          &a.hw_version, &a.grain_size, &a.zeroed_grain, &a.compression_level,
          &a.threads, &cache_obj, &confine, &salvage, &progress_obj))
    return NULL;
  PyObject *ret = NULL;
  struct vmdk_convert_options o = {0};
  struct vmdkit_progress prog;
  struct image im = {0};
  int format, sformat, bformat;
  const char *qemu, *sqemu, *bqemu;
  bool wt;
  if (fmt_obj == Py_None)
    fmt_obj = NULL; /* "vmdk" */
  if (fill_create(&a, &o.create) < 0 ||
      vmdkit_parse_format(fmt_obj, &format, &qemu) < 0 ||
      vmdkit_parse_format(sfmt_obj, &sformat, &sqemu) < 0 ||
      vmdkit_parse_format(bfmt_obj, &bformat, &bqemu) < 0 ||
      parse_cache(cache_obj, 0, &o.flags, &wt) < 0 ||
      progress_arg(progress_obj, &prog) < 0)
    goto out;
  if (bqemu) {
    PyErr_SetString(PyExc_ValueError,
                    "backing_format: a VMDK's backing file is 'vmdk' or 'raw'");
    goto out;
  }
  if (format == VMDK_FORMAT_RAW)
    o.create.subformat = VMDK_SUBFORMAT_RAW;
  if ((format == VMDK_FORMAT_RAW || qemu) && (a.subformat || backing)) {
    PyErr_Format(PyExc_ValueError, "subformat and backing apply to "
                 "format='vmdk' only, not '%s'", qemu ? qemu : "raw");
    goto out;
  }
  o.qemu_format = qemu;
  o.writethrough = wt;
  o.create.backing_file = backing ? PyBytes_AS_STRING(backing) : NULL;
  o.create.backing_format = bformat;
  o.progress = vmdkit_progress_cb;
  o.opaque = &prog;
  if (image_get(src, sformat, sqemu,
                (confine ? VMDK_OPEN_CONFINE : 0) |
                    (salvage ? VMDK_OPEN_SALVAGE : 0),
                NULL, &im) < 0)
    goto out;
  const char *d = PyBytes_AS_STRING(dst);
  int r;
  Py_BEGIN_ALLOW_THREADS
  r = vmdk_convert(im.d, d, &o);
  Py_END_ALLOW_THREADS
  ret = long_call_result(r, &prog, NULL);
  image_done(&im);
out:
  Py_XDECREF(dst);
  Py_XDECREF(backing);
  return ret;
}

/* ---- compare ------------------------------------------------------------ */

static PyObject *m_compare(PyObject *mod, PyObject *args, PyObject *kw) {
  (void)mod;
  static char *kwlist[] = {"a",      "b",        "a_format", "b_format",
                           "strict", "progress", NULL};
  PyObject *a = NULL, *b = NULL, *afmt_obj = Py_None, *bfmt_obj = Py_None,
           *progress_obj = Py_None;
  int strict = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|$OOpO:compare", kwlist, &a,
                                   &b, &afmt_obj, &bfmt_obj, &strict,
                                   &progress_obj))
    return NULL;
  int af, bf;
  const char *aq, *bq;
  struct vmdkit_progress prog;
  struct image ia = {0}, ib = {0};
  if (vmdkit_parse_format(afmt_obj, &af, &aq) < 0 ||
      vmdkit_parse_format(bfmt_obj, &bf, &bq) < 0 ||
      progress_arg(progress_obj, &prog) < 0 ||
      image_get(a, af, aq, 0, NULL, &ia) < 0)
    return NULL;
  /* Two layers of one image share a lock: taken once. */
  if (image_get(b, bf, bq, 0, ia.lock, &ib) < 0) {
    image_done(&ia);
    return NULL;
  }
  struct vmdk_compare_result res = {0};
  int r;
  Py_BEGIN_ALLOW_THREADS
  r = vmdk_compare(ia.d, ib.d, strict ? VMDK_COMPARE_STRICT : 0, &res,
                   vmdkit_progress_cb, &prog);
  Py_END_ALLOW_THREADS
  PyObject *ret = NULL;
  if (vmdkit_progress_reraise(&prog))
    ;
  else if (r < 0)
    vmdkit_raise(NULL);
  else {
    static const char *const kinds[] = {NULL, "content", "allocation", "size"};
    const char *kind = (unsigned)res.kind < 4 ? kinds[res.kind] : "content";
    ret = Py_BuildValue(
        "{s:O,s:s,s:N,s:O}", "identical",
        res.kind == VMDK_COMPARE_SAME ? Py_True : Py_False, "difference", kind,
        "offset",
        res.kind == VMDK_COMPARE_CONTENT || res.kind == VMDK_COMPARE_ALLOCATION
            ? PyLong_FromUnsignedLongLong(res.offset)
            : Py_NewRef(Py_None),
        "size_differs", res.size_differs ? Py_True : Py_False);
  }
  image_done(&ib);
  image_done(&ia);
  return ret;
}

/* ---- commit and rebase -------------------------------------------------- */

static PyObject *m_commit(PyObject *mod, PyObject *args, PyObject *kw) {
  (void)mod;
  static char *kwlist[] = {"path", "format", "progress", NULL};
  PyObject *path = NULL, *fmt_obj = Py_None, *progress_obj = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|$OO:commit", kwlist,
                                   PyUnicode_FSConverter, &path, &fmt_obj,
                                   &progress_obj))
    return NULL;
  PyObject *ret = NULL;
  int format;
  const char *qemu;
  struct vmdkit_progress prog;
  if (vmdkit_parse_format(fmt_obj, &format, &qemu) < 0 ||
      progress_arg(progress_obj, &prog) < 0)
    goto out;
  const char *p = PyBytes_AS_STRING(path);
  struct vmdk_disk *d = vmdkit_open_image(p, format, qemu, VMDK_OPEN_RDWR);
  if (!d) {
    vmdkit_raise(p);
    goto out;
  }
  int r, c;
  Py_BEGIN_ALLOW_THREADS
  r = vmdk_commit(d, vmdkit_progress_cb, &prog);
  c = vmdk_close(d);
  Py_END_ALLOW_THREADS
  ret = long_call_result(r < 0 ? r : c, &prog, p);
out:
  Py_XDECREF(path);
  return ret;
}

static PyObject *m_rebase(PyObject *mod, PyObject *args, PyObject *kw) {
  (void)mod;
  static char *kwlist[] = {"path",   "backing",  "backing_format", "format",
                           "unsafe", "progress", NULL};
  PyObject *path = NULL, *backing = NULL, *backing_obj, *bfmt_obj = Py_None,
           *fmt_obj = Py_None, *progress_obj = Py_None;
  int unsafe = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O&O|O$OpO:rebase", kwlist,
                                   PyUnicode_FSConverter, &path, &backing_obj,
                                   &bfmt_obj, &fmt_obj, &unsafe, &progress_obj))
    return NULL;
  PyObject *ret = NULL;
  int format, bformat;
  const char *qemu, *bqemu;
  struct vmdkit_progress prog;
  if ((backing_obj != Py_None && path_arg(backing_obj, &backing) < 0) ||
      vmdkit_parse_format(fmt_obj, &format, &qemu) < 0 ||
      vmdkit_parse_format(bfmt_obj, &bformat, &bqemu) < 0 ||
      progress_arg(progress_obj, &prog) < 0)
    goto out;
  if (bqemu) {
    PyErr_SetString(PyExc_ValueError,
                    "backing_format: a VMDK's backing file is 'vmdk' or 'raw'");
    goto out;
  }
  const char *p = PyBytes_AS_STRING(path);
  const char *b = backing ? PyBytes_AS_STRING(backing) : NULL;
  struct vmdk_disk *d = vmdkit_open_image(
      p, format, qemu, VMDK_OPEN_RDWR | (unsafe ? VMDK_OPEN_NO_BACKING : 0));
  if (!d) {
    vmdkit_raise(p);
    goto out;
  }
  int r, c;
  Py_BEGIN_ALLOW_THREADS
  r = unsafe ? vmdk_set_backing(d, b, bformat)
             : vmdk_rebase(d, b, bformat, vmdkit_progress_cb, &prog);
  c = vmdk_close(d);
  Py_END_ALLOW_THREADS
  ret = long_call_result(r < 0 ? r : c, &prog, p);
out:
  Py_XDECREF(path);
  Py_XDECREF(backing);
  return ret;
}

static PyObject *m_remote_option(PyObject *self, PyObject *args,
                                 PyObject *kw) {
  (void)self;
  static char *kwlist[] = {"key", "value", NULL};
  const char *key, *value;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "ss:remote_option", kwlist, &key,
                                   &value))
    return NULL;
  if (vmdk_remote_option(key, value) != 0) {
    PyErr_SetString(PyExc_ValueError, vmdk_get_error());
    return NULL;
  }
  Py_RETURN_NONE;
}

static PyObject *m_remote_options_clear(PyObject *self, PyObject *args) {
  (void)self;
  (void)args;
  vmdk_remote_options_clear();
  Py_RETURN_NONE;
}

/* ---- the module --------------------------------------------------------- */

#define SIG(name, args) name "(" args ")\n--\n\n"

static PyMethodDef methods[] = {
    {"open", (PyCFunction)(void (*)(void))m_open, METH_VARARGS | METH_KEYWORDS,
     SIG("open", "path, mode='r', format=None, confine=False, cache=None, "
                 "salvage=False")
     "Open the image at PATH and return a vmdkit.Disk.\n\n"
     "PATH: a VMDK (descriptor or monolithic file, any subformat, with its "
     "backing chain), a raw file, an image in a format QEMU reads, or a "
     "disk inside an appliance: 'app.ova', 'app.ova:disk1.vmdk', "
     "'app.ovf' (read in place, read-only); or the URL of a VMDK or OVA "
     "file (http://, https://, ssh://, file+nbd://: read-only, see "
     "remote_option()).\n"
     "MODE: 'r' (read-only: no file is ever written) or 'r+'.\n"
     "FORMAT: None (probe, as qemu-img does), 'vmdk', 'raw', or a QEMU "
     "format ('qcow2', 'vhdx', 'vpc', 'vdi', ...: read and written "
     "through qemu-nbd, which must be installed).\n"
     "CONFINE: refuse extent and backing files outside PATH's folder "
     "(use it for images you did not make).\n"
     "CACHE: None or 'writeback' (flush() syncs), 'unsafe' (nothing is "
     "synced), 'none' (O_DIRECT), 'writethrough' (every write is flushed), "
     "'directsync'.\n"
     "SALVAGE: read a truncated streamOptimized image as far as it goes "
     "(read-only)."},
    {"remote_option", (PyCFunction)(void (*)(void))m_remote_option,
     METH_VARARGS | METH_KEYWORDS,
     SIG("remote_option", "key, value")
     "Set an option of remote images (paths that are URLs: http://, "
     "https://, ssh://, file+nbd://), for every one opened after it in "
     "this process: user, password ('+FILE' reads a file), cookie, "
     "header, sslverify='false', cainfo (a CA file), identity and "
     "known-hosts (ssh), connections, readahead, confine='no', filter "
     "(an nbdkit filter), or any parameter of nbdkit's curl or ssh "
     "plugin.  Secrets never reach a child's command line or a message.  "
     "Raises ValueError for a bad key or value.  A remote image cannot "
     "cross os.fork(): open it in the process that reads it."},
    {"remote_options_clear", m_remote_options_clear, METH_NOARGS,
     SIG("remote_options_clear", "")
     "Forget every remote option (and URLs' credentials) set so far."},
    {"create", (PyCFunction)(void (*)(void))m_create,
     METH_VARARGS | METH_KEYWORDS,
     SIG("create", "path, size=None, subformat='monolithicSparse', "
                   "backing=None, backing_format=None, *, format=None, "
                   "adapter_type=None, hw_version=0, grain_size=0, "
                   "zeroed_grain=False, compression_level=0, threads=0, "
                   "cache=None")
     "Create a new image at PATH (existing files are overwritten) and "
     "return it open as a Disk with mode 'r+'.\n\n"
     "SIZE: bytes (rounded up to 512); None with BACKING: the backing's "
     "size.\n"
     "SUBFORMAT: monolithicSparse, monolithicFlat, twoGbMaxExtentSparse, "
     "twoGbMaxExtentFlat, streamOptimized (write it front to back), vmfs, "
     "or raw.\n"
     "BACKING: make a copy-on-write child of this image (sparse "
     "subformats); a relative path is relative to PATH's folder, as it is "
     "written into the child.  BACKING_FORMAT: None, 'vmdk' or 'raw'.\n"
     "FORMAT: None or 'vmdk'; 'raw'; or a QEMU format ('qcow2', ...: made "
     "with qemu-img create, written through qemu-nbd).\n"
     "ADAPTER_TYPE (ide, buslogic, lsilogic, legacyESX, pvscsi), "
     "HW_VERSION, GRAIN_SIZE (bytes), ZEROED_GRAIN, COMPRESSION_LEVEL "
     "(1-12, streamOptimized), THREADS (compression threads): as "
     "`vmdkit create -o`; 0/None: the defaults."},
    {"convert", (PyCFunction)(void (*)(void))m_convert,
     METH_VARARGS | METH_KEYWORDS,
     SIG("convert", "src, dst, format='vmdk', subformat=None, *, "
                    "src_format=None, backing=None, backing_format=None, "
                    "adapter_type=None, hw_version=0, grain_size=0, "
                    "zeroed_grain=False, compression_level=0, threads=0, "
                    "cache=None, confine=False, salvage=False, "
                    "progress=None")
     "Copy the disk SRC (a path, opened read-only, or an open Disk) into "
     "a new image DST, as `vmdkit convert` does: zero runs and all-zero "
     "clusters stay unallocated, a backing chain is read through "
     "(flattened), streamOptimized output is compressed on every core.\n\n"
     "FORMAT: 'vmdk' (SUBFORMAT: monolithicSparse by default), 'raw', or a "
     "QEMU format ('qcow2', 'vhdx', 'vdi', ...).\n"
     "BACKING: DST becomes a child of it holding only what differs.\n"
     "CACHE: None/'writeback' (DST is synced before convert returns), "
     "'unsafe' (not synced: what qemu-img convert does by default), "
     "'none', 'writethrough', 'directsync'.\n"
     "PROGRESS: called as progress(done, total) in bytes from the "
     "converting thread; an exception raised in it (or Ctrl-C) cancels the "
     "conversion and propagates.  On any failure DST's files are removed.  "
     "The GIL is released while converting."},
    {"compare", (PyCFunction)(void (*)(void))m_compare,
     METH_VARARGS | METH_KEYWORDS,
     SIG("compare", "a, b, *, a_format=None, b_format=None, strict=False, "
                    "progress=None")
     "Compare what the disks A and B (paths or open Disks) read, as "
     "`qemu-img compare` does, and return a dict: 'identical' (bool), "
     "'difference' (None, 'content', 'allocation' or 'size'), 'offset' "
     "(the first differing byte, or where the allocation differs, else "
     "None), 'size_differs' (bool).  Without STRICT, disks of different "
     "sizes are identical when the larger one reads zeros past the end of "
     "the smaller; with STRICT, sizes and allocation must match too."},
    {"commit", (PyCFunction)(void (*)(void))m_commit,
     METH_VARARGS | METH_KEYWORDS,
     SIG("commit", "path, *, format=None, progress=None")
     "Write everything the image PATH holds into its backing image, which "
     "then reads as PATH did (`vmdkit commit`).  PATH stays a valid child "
     "of it."},
    {"rebase", (PyCFunction)(void (*)(void))m_rebase,
     METH_VARARGS | METH_KEYWORDS,
     SIG("rebase", "path, backing, backing_format=None, *, format=None, "
                   "unsafe=False, progress=None")
     "Make BACKING (a path, relative to PATH's folder; None: no backing "
     "file) the backing image of PATH.  Safe (the default): every range "
     "that reads differently through BACKING is first copied into PATH, "
     "so what PATH reads does not change.  UNSAFE: only the link is "
     "rewritten (for an image whose backing file moved)."},
    {NULL, NULL, 0, NULL}};

static const char module_doc[] =
    "vmdkit: VMware virtual disks (VMDK) from Python.\n\n"
    "Open an image and use it as a binary file:\n\n"
    "    import vmdkit, hashlib\n"
    "    with vmdkit.open('disk.vmdk') as disk:\n"
    "        h = hashlib.sha256()\n"
    "        buf = bytearray(1 << 20)\n"
    "        while n := disk.readinto(buf):\n"
    "            h.update(memoryview(buf)[:n])\n\n"
    "Make, convert, compare and change images:\n\n"
    "    vmdkit.create('new.vmdk', 10 << 30)           # monolithicSparse\n"
    "    vmdkit.convert('cloud.qcow2', 'app.vmdk', subformat='streamOptimized')\n"
    "    vmdkit.compare('a.vmdk', 'b.raw')['identical']\n"
    "    vmdkit.commit('child.vmdk'); vmdkit.rebase('child.vmdk', 'new-base.vmdk')\n\n"
    "Every subformat vmdkit reads (monolithicSparse/Flat, twoGbMaxExtent*, "
    "streamOptimized, vmfs, COWD, seSparse read-only), backing chains, raw "
    "files, disks inside OVA/OVF appliances (read in place), and the "
    "formats QEMU reads (through qemu-nbd).  This is the C library "
    "libvmdkit under a thin layer: no format code is written in Python.\n\n"
    "Errors: vmdkit.Error, a subclass of OSError, with errno, filename, "
    "strerror and message (the library's whole line).  Misuse raises the "
    "usual exceptions: ValueError for I/O on a closed disk, "
    "io.UnsupportedOperation for writing a read-only one, TypeError and "
    "ValueError for bad arguments.\n\n"
    "Threads: every call releases the GIL while the library works.  A Disk "
    "may be shared between threads: its calls run one at a time (reads "
    "and writes with offsets -- pread, pwrite -- are the ones to share; "
    "the position of read/write/seek is the Disk's, not the thread's).  "
    "Different Disks work in parallel.  A backing layer (Disk.backing) "
    "shares its image's lock.  The module functions may run in parallel "
    "on different images.";

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "vmdkit",
                                        module_doc, -1, methods,
                                        NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_vmdkit(void);
PyMODINIT_FUNC PyInit_vmdkit(void) {
  PyObject *m = PyModule_Create(&module_def), *io = NULL;
  if (!m)
    return NULL;
  PyObject *dict = Py_BuildValue(
      "{s:s}", "__doc__",
      "An error of the vmdkit library: an OSError whose errno says what "
      "kind (ENOENT, EINVAL for a damaged image, EROFS, ENOSPC, ...), "
      "filename the image, strerror the reason and message the library's "
      "whole line ('FILE: what is wrong, with the numbers').");
  if (!dict ||
      !(vmdkit_error_type = PyErr_NewException("vmdkit.Error", PyExc_OSError,
                                               dict)) ||
      PyModule_AddObjectRef(m, "Error", vmdkit_error_type) < 0 ||
      !(io = PyImport_ImportModule("io")) ||
      !(vmdkit_unsupported = PyObject_GetAttrString(io, "UnsupportedOperation")) ||
      vmdkit_disk_types_init(m) < 0 ||
      PyModule_AddStringConstant(m, "__version__", vmdk_version()) < 0 ||
      PyModule_AddStringConstant(m, "VERSION", VMDKIT_VERSION_STRING) < 0) {
    Py_XDECREF(dict);
    Py_XDECREF(io);
    Py_DECREF(m);
    return NULL;
  }
  Py_DECREF(dict);
  Py_DECREF(io);
  return m;
}
