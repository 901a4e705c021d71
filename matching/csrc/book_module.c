/* matching._book: the Python face of book.c. Only matching/book.py imports it.
 * Arguments are parsed by hand (METH_FASTCALL) because argument parsing is most of the cost of
 * a single call; every bad argument becomes TypeError, ValueError or KeyError. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "book.h"

#define KEPT_EVENTS 65536 /* events the scratch buffer keeps room for between calls */

typedef struct {
    PyObject_HEAD
    ob_book *book;
    ob_events events; /* scratch buffer, reused by every call */
} BookObject;

static const char *error_text(int err) {
    switch (err) {
    case OB_ERR_BAD_ID: return "order_id must be a positive 64-bit integer";
    case OB_ERR_BAD_OWNER: return "owner must be a non-negative 64-bit integer";
    case OB_ERR_BAD_SIDE: return "side must be BUY (0) or SELL (1)";
    case OB_ERR_BAD_PRICE: return "price must be a positive 64-bit integer";
    case OB_ERR_BAD_QTY: return "qty must be a positive 64-bit integer";
    case OB_ERR_BAD_FLAGS: return "invalid tif, post_only or stp";
    case OB_ERR_DUPLICATE_ID: return "duplicate order_id";
    case OB_ERR_UNKNOWN_ID: return "unknown order_id";
    case OB_ERR_OVERFLOW: return "the resting quantity at this price would overflow 64 bits";
    case OB_ERR_BAD_OP: return "unknown command";
    default: return "out of memory";
    }
}

static PyObject *raise_error(int err, int64_t order_id) {
    if (err == OB_ERR_NO_MEMORY) return PyErr_NoMemory();
    if (err == OB_ERR_UNKNOWN_ID) {
        PyObject *key = PyLong_FromLongLong(order_id);
        if (key) {
            PyErr_SetObject(PyExc_KeyError, key);
            Py_DECREF(key);
        }
        return NULL;
    }
    PyErr_SetString(PyExc_ValueError, error_text(err));
    return NULL;
}

/* ---------- argument parsing ---------- */

/* an int (not bool) that fits in int64 */
static int as_i64(PyObject *o, const char *name, int64_t *out) {
    if (!PyLong_Check(o) || PyBool_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name, Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow) {
        PyErr_Format(PyExc_ValueError, "%s does not fit in a signed 64-bit integer", name);
        return -1;
    }
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = (int64_t)v;
    return 0;
}

static int as_flag(PyObject *o, const char *name, int64_t *out) {
    if (PyBool_Check(o)) {
        *out = (o == Py_True);
        return 0;
    }
    if (as_i64(o, name, out) < 0) return -1;
    if (*out != 0 && *out != 1) {
        PyErr_Format(PyExc_ValueError, "%s must be True, False, 0 or 1", name);
        return -1;
    }
    return 0;
}

/* Gathers positional and keyword arguments into slots[0..n) by name; returns -1 on error. */
static int gather(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                  const char *const *names, Py_ssize_t n, Py_ssize_t required, PyObject **slots) {
    if (nargs > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %zd arguments (%zd given)", fname, n, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) slots[i] = i < nargs ? args[i] : NULL;
    if (kwnames) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; k++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, k);
            Py_ssize_t i = 0;
            for (; i < n; i++)
                if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) break;
            if (i == n) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, key);
                return -1;
            }
            if (slots[i]) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname, names[i]);
                return -1;
            }
            slots[i] = args[nargs + k];
        }
    }
    for (Py_ssize_t i = 0; i < required; i++) {
        if (!slots[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname, names[i]);
            return -1;
        }
    }
    return 0;
}

/* converts the gathered slots to integers; optional missing ones keep their defaults */
static int convert(PyObject **slots, const char *const *names, Py_ssize_t n, int64_t *values,
                   Py_ssize_t flag_index) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!slots[i]) continue;
        int r = (i == flag_index) ? as_flag(slots[i], names[i], &values[i])
                                  : as_i64(slots[i], names[i], &values[i]);
        if (r < 0) return -1;
    }
    return 0;
}

/* ---------- results ---------- */

static PyObject *event_tuple(const ob_event *ev) {
    PyObject *t = PyTuple_New(6);
    if (!t) return NULL;
    const int64_t f[6] = {ev->type, ev->order_id, ev->other, ev->price, ev->qty, ev->info};
    for (int i = 0; i < 6; i++) {
        PyObject *v = PyLong_FromLongLong(f[i]);
        if (!v) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static PyObject *run(BookObject *self, const ob_command *cmd) {
    self->events.len = 0;
    int err = ob_apply(self->book, cmd, &self->events);
    if (err) return raise_error(err, cmd->order_id);
    PyObject *list = PyList_New((Py_ssize_t)self->events.len);
    if (!list) return NULL;
    for (size_t i = 0; i < self->events.len; i++) {
        PyObject *t = event_tuple(&self->events.data[i]);
        if (!t) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    return list;
}

/* an out-of-range tif or stp becomes a bit the core refuses as ERR_BAD_FLAGS, so errors are
 * reported in the documented order */
static int64_t pack_flags(int64_t tif, int64_t post_only, int64_t stp) {
    if (tif < 0 || tif > OB_FOK || stp < 0 || stp > OB_STP_CANCEL_BOTH) return (int64_t)1 << 40;
    return tif | (post_only ? OB_FLAG_POST_ONLY : 0) | (stp << OB_FLAG_STP_SHIFT);
}

/* ---------- commands ---------- */

static PyObject *Book_place(BookObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"order_id", "owner", "side", "price", "qty", "tif", "post_only", "stp"};
    PyObject *slots[8];
    int64_t v[8] = {0, 0, 0, 0, 0, OB_GTC, 0, OB_STP_NONE};
    if (gather("place", args, nargs, kwnames, names, 8, 5, slots) < 0 || convert(slots, names, 8, v, 6) < 0)
        return NULL;
    ob_command cmd = {OB_OP_LIMIT, v[0], v[1], v[2], v[3], v[4], pack_flags(v[5], v[6], v[7])};
    return run(self, &cmd);
}

static PyObject *Book_market(BookObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"order_id", "owner", "side", "qty", "protect_price", "tif", "stp"};
    PyObject *slots[7];
    int64_t v[7] = {0, 0, 0, 0, 0, OB_IOC, OB_STP_NONE};
    if (gather("market", args, nargs, kwnames, names, 7, 4, slots) < 0 || convert(slots, names, 7, v, -1) < 0)
        return NULL;
    ob_command cmd = {OB_OP_MARKET, v[0], v[1], v[2], v[4], v[3], pack_flags(v[5], 0, v[6])};
    return run(self, &cmd);
}

static PyObject *Book_cancel(BookObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"order_id"};
    PyObject *slots[1];
    int64_t v[1] = {0};
    if (gather("cancel", args, nargs, kwnames, names, 1, 1, slots) < 0 || convert(slots, names, 1, v, -1) < 0)
        return NULL;
    ob_command cmd = {OB_OP_CANCEL, v[0], 0, 0, 0, 0, 0};
    return run(self, &cmd);
}

static PyObject *Book_amend(BookObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    static const char *const names[] = {"order_id", "price", "qty"};
    PyObject *slots[3];
    int64_t v[3] = {0, 0, 0};
    if (gather("amend", args, nargs, kwnames, names, 3, 3, slots) < 0 || convert(slots, names, 3, v, -1) < 0)
        return NULL;
    ob_command cmd = {OB_OP_AMEND, v[0], 0, 0, v[1], v[2], 0};
    return run(self, &cmd);
}

/* a readable, contiguous view of a buffer whose size is a multiple of record bytes */
static int get_records(PyObject *data, Py_buffer *view, size_t record, const char *what) {
    if (PyObject_GetBuffer(data, view, PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous buffer of int64, not %.100s", what,
                     Py_TYPE(data)->tp_name);
        return -1;
    }
    if ((size_t)view->len % record) {
        PyErr_Format(PyExc_ValueError, "%s is %zd bytes, not a multiple of %zu", what, view->len, record);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* the single argument of a one-argument method, given by position or by its documented name */
static PyObject *single_arg(const char *fname, const char *name, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames) {
    PyObject *slot;
    const char *const names[] = {name};
    if (gather(fname, args, nargs, kwnames, names, 1, 1, &slot) < 0) return NULL;
    return slot;
}

static PyObject *Book_apply(BookObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *data = single_arg("apply", "commands", args, nargs, kwnames);
    if (!data) return NULL;
    Py_buffer view;
    if (get_records(data, &view, sizeof(ob_command), "commands") < 0) return NULL;
    size_t n = (size_t)view.len / sizeof(ob_command);
    const ob_command *cmds = view.buf;
    ob_command *copy = NULL;
    if ((uintptr_t)view.buf % _Alignof(ob_command)) {
        copy = PyMem_Malloc(view.len ? (size_t)view.len : 1);
        if (!copy) {
            PyBuffer_Release(&view);
            return PyErr_NoMemory();
        }
        memcpy(copy, view.buf, (size_t)view.len);
        cmds = copy;
    }
    self->events.len = 0;
    int err = ob_apply_batch(self->book, cmds, n, &self->events);
    PyMem_Free(copy);
    PyBuffer_Release(&view);
    if (err) return raise_error(err, 0);
    PyObject *result = PyBytes_FromStringAndSize((const char *)self->events.data,
                                                 (Py_ssize_t)(self->events.len * sizeof(ob_event)));
    /* a huge batch must not pin its scratch buffer for the book's whole life */
    if (self->events.cap > KEPT_EVENTS) ob_events_free(&self->events);
    return result;
}

/* ---------- queries ---------- */

static PyObject *best(BookObject *self, int side) {
    int64_t p = ob_best_price(self->book, side);
    if (!p) Py_RETURN_NONE;
    return PyLong_FromLongLong(p);
}

static PyObject *Book_best_bid(BookObject *self, PyObject *Py_UNUSED(ignored)) { return best(self, OB_BUY); }
static PyObject *Book_best_ask(BookObject *self, PyObject *Py_UNUSED(ignored)) { return best(self, OB_SELL); }

static PyObject *depth_side(BookObject *self, int side, size_t max) {
    size_t have = ob_level_count(self->book, side);
    size_t n = have < max ? have : max;
    ob_level_info *levels = PyMem_Malloc((n ? n : 1) * sizeof(ob_level_info));
    if (!levels) return PyErr_NoMemory();
    n = ob_depth(self->book, side, levels, n);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *t = Py_BuildValue("(LLL)", (long long)levels[i].price, (long long)levels[i].qty,
                                    (long long)levels[i].count);
        if (!t) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    PyMem_Free(levels);
    return list;
}

static PyObject *Book_depth(BookObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *arg = single_arg("depth", "levels", args, nargs, kwnames);
    if (!arg) return NULL;
    int64_t levels;
    if (as_i64(arg, "levels", &levels) < 0) return NULL;
    if (levels < 0) {
        PyErr_SetString(PyExc_ValueError, "levels must be >= 0");
        return NULL;
    }
    PyObject *bids = depth_side(self, OB_BUY, (size_t)levels);
    if (!bids) return NULL;
    PyObject *asks = depth_side(self, OB_SELL, (size_t)levels);
    if (!asks) {
        Py_DECREF(bids);
        return NULL;
    }
    return Py_BuildValue("(NN)", bids, asks);
}

static PyObject *Book_order(BookObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *arg = single_arg("order", "order_id", args, nargs, kwnames);
    if (!arg) return NULL;
    int64_t id;
    if (as_i64(arg, "order_id", &id) < 0) return NULL;
    ob_order_info info;
    if (!ob_order(self->book, id, &info)) Py_RETURN_NONE;
    return Py_BuildValue("(LLLLL)", (long long)info.side, (long long)info.price, (long long)info.qty,
                         (long long)info.owner, (long long)info.flags);
}

static PyObject *u128(uint64_t hi, uint64_t lo) {
    PyObject *h = PyLong_FromUnsignedLongLong(hi), *l = PyLong_FromUnsignedLongLong(lo);
    PyObject *shift = PyLong_FromLong(64), *shifted = NULL, *sum = NULL;
    if (h && l && shift && (shifted = PyNumber_Lshift(h, shift))) sum = PyNumber_Or(shifted, l);
    Py_XDECREF(h);
    Py_XDECREF(l);
    Py_XDECREF(shift);
    Py_XDECREF(shifted);
    return sum;
}

static PyObject *Book_stats(BookObject *self, PyObject *Py_UNUSED(ignored)) {
    uint64_t hi, lo;
    ob_side_total(self->book, OB_BUY, &hi, &lo);
    PyObject *bid_qty = u128(hi, lo);
    ob_side_total(self->book, OB_SELL, &hi, &lo);
    PyObject *ask_qty = u128(hi, lo);
    if (!bid_qty || !ask_qty) {
        Py_XDECREF(bid_qty);
        Py_XDECREF(ask_qty);
        return NULL;
    }
    return Py_BuildValue("(nnnNN)", (Py_ssize_t)ob_order_count(self->book),
                         (Py_ssize_t)ob_level_count(self->book, OB_BUY),
                         (Py_ssize_t)ob_level_count(self->book, OB_SELL), bid_qty, ask_qty);
}

typedef struct {
    int64_t *out;
} snap_ctx;

static int snap_one(void *ctx, int64_t id, int64_t owner, int64_t side, int64_t price, int64_t qty,
                    int64_t flags) {
    snap_ctx *c = ctx;
    int64_t rec[6] = {id, owner, side, price, qty, flags};
    memcpy(c->out, rec, sizeof rec);
    c->out += 6;
    return 0;
}

static PyObject *Book_snapshot(BookObject *self, PyObject *Py_UNUSED(ignored)) {
    size_t n = ob_order_count(self->book);
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * 6 * sizeof(int64_t)));
    if (!bytes) return NULL;
    snap_ctx ctx = {(int64_t *)PyBytes_AS_STRING(bytes)};
    ob_visit(self->book, snap_one, &ctx);
    return bytes;
}

static PyObject *Book_restore(BookObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *data = single_arg("restore", "data", args, nargs, kwnames);
    if (!data) return NULL;
    if (ob_order_count(self->book)) {
        PyErr_SetString(PyExc_ValueError, "restore needs an empty book");
        return NULL;
    }
    Py_buffer view;
    if (get_records(data, &view, 6 * sizeof(int64_t), "snapshot") < 0) return NULL;
    size_t n = (size_t)view.len / (6 * sizeof(int64_t));
    int err = OB_OK;
    for (size_t i = 0; i < n && !err; i++) {
        int64_t r[6];
        memcpy(r, (const char *)view.buf + i * sizeof r, sizeof r);
        err = ob_insert_resting(self->book, r[0], r[1], r[2], r[3], r[4], r[5]);
    }
    PyBuffer_Release(&view);
    int64_t bid = ob_best_price(self->book, OB_BUY), ask = ob_best_price(self->book, OB_SELL);
    if (!err && bid && ask && bid >= ask) {
        ob_clear(self->book);
        PyErr_SetString(PyExc_ValueError, "snapshot holds a crossed book");
        return NULL;
    }
    if (err) {
        ob_clear(self->book);
        if (err == OB_ERR_NO_MEMORY) return PyErr_NoMemory();
        PyErr_Format(PyExc_ValueError, "invalid snapshot: %s", error_text(err));
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Book_clear(BookObject *self, PyObject *Py_UNUSED(ignored)) {
    ob_clear(self->book);
    ob_events_free(&self->events);
    Py_RETURN_NONE;
}

static Py_ssize_t Book_len(BookObject *self) { return (Py_ssize_t)ob_order_count(self->book); }

static int Book_contains(BookObject *self, PyObject *key) {
    if (!PyLong_Check(key) || PyBool_Check(key)) {
        PyErr_Format(PyExc_TypeError, "order ids are ints, not %.100s", Py_TYPE(key)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long id = PyLong_AsLongLongAndOverflow(key, &overflow);
    if (overflow) return 0;
    if (id == -1 && PyErr_Occurred()) return -1;
    ob_order_info info;
    return ob_order(self->book, (int64_t)id, &info);
}

/* ---------- type ---------- */

static PyObject *Book_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "OrderBook() takes no arguments");
        return NULL;
    }
    BookObject *self = (BookObject *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    self->book = ob_new();
    if (!self->book) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void Book_dealloc(BookObject *self) {
    ob_free(self->book);
    ob_events_free(&self->events);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef Book_methods[] = {
    {"place", (PyCFunction)(void (*)(void))Book_place, FASTKW,
     "place(order_id, owner, side, price, qty, tif=GTC, post_only=False, stp=STP_NONE) -> events"},
    {"market", (PyCFunction)(void (*)(void))Book_market, FASTKW,
     "market(order_id, owner, side, qty, protect_price=0, tif=IOC, stp=STP_NONE) -> events"},
    {"cancel", (PyCFunction)(void (*)(void))Book_cancel, FASTKW, "cancel(order_id) -> events"},
    {"amend", (PyCFunction)(void (*)(void))Book_amend, FASTKW, "amend(order_id, price, qty) -> events"},
    {"apply", (PyCFunction)(void (*)(void))Book_apply, FASTKW, "apply(commands) -> bytes of events"},
    {"best_bid", (PyCFunction)Book_best_bid, METH_NOARGS, "best bid price or None"},
    {"best_ask", (PyCFunction)Book_best_ask, METH_NOARGS, "best ask price or None"},
    {"depth", (PyCFunction)(void (*)(void))Book_depth, FASTKW, "depth(levels) -> (bids, asks) of (price, qty, count)"},
    {"order", (PyCFunction)(void (*)(void))Book_order, FASTKW, "order(order_id) -> (side, price, qty, owner, flags) or None"},
    {"stats", (PyCFunction)Book_stats, METH_NOARGS, "(orders, bid_levels, ask_levels, bid_qty, ask_qty)"},
    {"snapshot", (PyCFunction)Book_snapshot, METH_NOARGS, "resting orders in priority order as bytes"},
    {"restore", (PyCFunction)(void (*)(void))Book_restore, FASTKW, "restore(snapshot) into an empty book"},
    {"clear", (PyCFunction)Book_clear, METH_NOARGS, "remove every order"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods Book_as_sequence = {
    .sq_length = (lenfunc)Book_len,
    .sq_contains = (objobjproc)Book_contains,
};

static PyTypeObject BookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "matching._book.OrderBook",
    .tp_basicsize = sizeof(BookObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Price-time priority limit order book on integer ticks and lots (docs/ORDER_BOOK.md).",
    .tp_new = Book_new,
    .tp_dealloc = (destructor)Book_dealloc,
    .tp_methods = Book_methods,
    .tp_as_sequence = &Book_as_sequence,
};

static struct PyModuleDef book_module = {
    PyModuleDef_HEAD_INIT, "_book", "C limit order book; import it through matching.book.", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__book(void) {
    if (PyType_Ready(&BookType) < 0) return NULL;
    PyObject *m = PyModule_Create(&book_module);
    if (!m) return NULL;
    Py_INCREF(&BookType);
    if (PyModule_AddObject(m, "OrderBook", (PyObject *)&BookType) < 0) {
        Py_DECREF(&BookType);
        Py_DECREF(m);
        return NULL;
    }
    static const struct {
        const char *name;
        long value;
    } constants[] = {
        {"BUY", OB_BUY}, {"SELL", OB_SELL}, {"GTC", OB_GTC}, {"IOC", OB_IOC}, {"FOK", OB_FOK},
        {"STP_NONE", OB_STP_NONE}, {"STP_CANCEL_RESTING", OB_STP_CANCEL_RESTING},
        {"STP_CANCEL_INCOMING", OB_STP_CANCEL_INCOMING}, {"STP_CANCEL_BOTH", OB_STP_CANCEL_BOTH},
        {"OP_LIMIT", OB_OP_LIMIT}, {"OP_MARKET", OB_OP_MARKET}, {"OP_CANCEL", OB_OP_CANCEL},
        {"OP_AMEND", OB_OP_AMEND}, {"EV_FILL", OB_EV_FILL}, {"EV_REST", OB_EV_REST},
        {"EV_CANCEL", OB_EV_CANCEL}, {"EV_REJECT", OB_EV_REJECT}, {"EV_AMEND", OB_EV_AMEND},
        {"CR_USER", OB_CR_USER}, {"CR_UNFILLED", OB_CR_UNFILLED}, {"CR_FOK", OB_CR_FOK},
        {"CR_POST_ONLY", OB_CR_POST_ONLY}, {"CR_STP", OB_CR_STP}, {"ERR_BAD_ID", OB_ERR_BAD_ID},
        {"ERR_BAD_OWNER", OB_ERR_BAD_OWNER}, {"ERR_BAD_SIDE", OB_ERR_BAD_SIDE},
        {"ERR_BAD_PRICE", OB_ERR_BAD_PRICE}, {"ERR_BAD_QTY", OB_ERR_BAD_QTY},
        {"ERR_BAD_FLAGS", OB_ERR_BAD_FLAGS}, {"ERR_DUPLICATE_ID", OB_ERR_DUPLICATE_ID},
        {"ERR_UNKNOWN_ID", OB_ERR_UNKNOWN_ID}, {"ERR_OVERFLOW", OB_ERR_OVERFLOW},
        {"ERR_BAD_OP", OB_ERR_BAD_OP},
    };
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
        if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    return m;
}
