/* SPDX-License-Identifier: BSD-3-Clause */
/* The Python binding's shared declarations (python/module.c: the module,
 * its functions and errors; python/disk.c: the Disk type).  The binding is
 * a thin adapter over include/vmdkit.h: no format code lives here.
 *
 * Threads: every library call runs with the GIL released and the lock of
 * the handle it uses held (one lock per opened image, shared with the
 * Disk objects of its backing layers), so calls on one Disk from several
 * threads run one at a time and calls on different Disks run in
 * parallel.  The lock is only ever taken with the GIL released, and the
 * GIL may be taken back while the lock is held (to turn what the call
 * returned into Python objects before another call can change it), never
 * the other way round: no deadlock. */
#ifndef VMDKIT_PY_H
#define VMDKIT_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmdkit.h"

/* ---- module.c ------------------------------------------------------------
 */

/* The module's state (one interpreter; set at import). */
extern PyObject *vmdkit_error_type;    /* vmdkit.Error, an OSError */
extern PyObject *vmdkit_unsupported;   /* io.UnsupportedOperation */

/* Raise vmdkit.Error from the calling thread's library error: errno, the
 * library's message (also as the attribute "message") and FILENAME (may
 * be NULL).  Returns NULL. */
PyObject *vmdkit_raise(const char *filename);
/* The same with ERR and a printf-style message of the binding's own. */
PyObject *vmdkit_raise_errno(int err, const char *filename, const char *fmt,
                             ...) __attribute__((format(printf, 3, 4)));

/* A VMDK_FORMAT_* or a QEMU format name from a Python value: None -> AUTO,
 * "vmdk", "raw", else a QEMU format (*QEMU points into OBJ).  0 or -1
 * (ValueError/TypeError set). */
int vmdkit_parse_format(PyObject *obj, int *format, const char **qemu);

/* Open PATH as vmdk_open_format/vmdk_open_qemu do, with the GIL released.
 * Returns NULL with the library's error (no Python error set). */
struct vmdk_disk *vmdkit_open_image(const char *path, int format,
                                    const char *qemu, unsigned flags);

/* The progress trampoline of long calls: a vmdk_progress_cb that takes
 * the GIL, checks for signals (Ctrl-C cancels) and calls CALLABLE(done,
 * total); an exception cancels the call and is kept to be raised after
 * it.  Set up with GIL held, used from any thread. */
struct vmdkit_progress {
  PyObject *callable; /* borrowed; may be NULL */
  PyObject *exc_type, *exc_value, *exc_tb; /* the exception that cancelled */
};
int vmdkit_progress_cb(void *opaque, uint64_t done, uint64_t total);
/* After the call: when it was cancelled by an exception, raise that one
 * (returns true); else false.  GIL held. */
bool vmdkit_progress_reraise(struct vmdkit_progress *p);

/* ---- disk.c --------------------------------------------------------------
 */

extern PyTypeObject *vmdkit_disk_type; /* vmdkit.Disk */
extern PyTypeObject *vmdkit_run_type;  /* vmdkit.Run (a struct sequence) */

/* Make the Disk and Run types (at import) and add them to MODULE.  0 or
 * -1. */
int vmdkit_disk_types_init(PyObject *module);

/* A new Disk owning DISK (closed with it), named NAME, opened writable
 * or not; WRITETHROUGH: flush after every write.  On failure DISK is
 * closed and NULL returned. */
PyObject *vmdkit_disk_new(struct vmdk_disk *disk, const char *name,
                          bool writable, bool writethrough);

/* For module functions that take a Disk (convert, compare): the lock of
 * OBJ's handle, or NULL with TypeError (not a Disk) or ValueError (closed)
 * set. */
PyThread_type_lock vmdkit_disk_lock_of(PyObject *obj);
/* Take LOCK with the GIL held: at once when it is free, else waiting with
 * the GIL released (so the holder can take the GIL back). */
void vmdkit_lock(PyThread_type_lock lock);
/* OBJ's handle, its lock held: NULL with ValueError set when it was closed
 * meanwhile (or its owner was). */
struct vmdk_disk *vmdkit_disk_handle(PyObject *obj);
/* The name of a Disk (its path as opened), or NULL. */
const char *vmdkit_disk_name(PyObject *obj);

#endif /* VMDKIT_PY_H */
