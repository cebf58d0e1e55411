/*
 * The compiled header walker: the hot loop of curation/crawler/reader.py (_Walker.walk and
 * _Walker._sequence) in C, through the CPython C API.
 *
 * Contract (see curation/crawler/compiled.py, which is the only caller):
 *
 * - walk(walker, pos, end, path, top) reads the same elements as _Walker.walk(pos, end, path, top)
 *   and appends the same rows to walker.out's columns (lists, or the compiled columns StrColumn and
 *   IntColumn defined below, whose buffers it writes directly); on success it returns the same offset and
 *   leaves the walker in the same state (stop_offset, pixel_offset, pixel_length,
 *   pixel_representation, character set, caveats).
 * - It raises the reader's _NeedMore(end) exactly where the Python walk does (the caller then reads
 *   more bytes and starts over).
 * - Everything else, every error and every rare path (a malformed value, a structural error, a deep
 *   nesting, an unknown VR string, an exception in a Python helper), raises Fallback instead: the
 *   caller drops the rows appended so far and lets the Python walker read the same bytes, so that
 *   errors, their reasons and messages have one implementation. This file never builds an error
 *   message; it only has to agree with the Python walker on files that read cleanly.
 *
 * Memory safety: every growth of a column's buffers is checked for overflow and failure before a
 * write; every read of the buffer is preceded by a bounds check against buflen (the
 * length of the bytes object, which the walk holds a reference to); positions are 64-bit and a
 * length is at most 0xFFFFFFFF, so pos + length cannot overflow; recursion is bounded by
 * MAX_DEPTH (deeper nesting falls back to Python, which has its own limit).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define ITEM 0xFFFEE000u
#define ITEM_DELIM 0xFFFEE00Du
#define SEQ_DELIM 0xFFFEE0DDu
#define UNDEFINED 0xFFFFFFFFu
/* Sequence nesting handled here; deeper files are walked by the Python reader. Real files nest a
 * few levels (enhanced multi-frame: 3-4). */
#define MAX_DEPTH 64
/* Private creator blocks per dataset handled here (real files: a few dozen at most). */
#define MAX_CREATORS 512

/* ---- VRs ---------------------------------------------------------------------------------- */

enum { K_PLAIN = 0, K_CHARSET = 1, K_BINARY = 2, K_OTHER = 3 };
enum { N_NONE = 0, N_US, N_SS, N_UL, N_SL, N_FL, N_FD, N_SV, N_UV, N_AT };

typedef struct {
    const char *name;
    int kind;
    int long_length; /* explicit encoding with a 2-byte reserved field and a 4-byte length */
    int numeric;
} VRInfo;

/* Same sets as reader.py: _PLAIN_VRS, _CHARSET_VRS, _BINARY_VRS, _LONG_VRS, _NUMERIC_FORMAT. */
static const VRInfo VRS[] = {
    {"AE", K_PLAIN, 0, N_NONE},   {"AS", K_PLAIN, 0, N_NONE},   {"AT", K_OTHER, 0, N_AT},
    {"CS", K_PLAIN, 0, N_NONE},   {"DA", K_PLAIN, 0, N_NONE},   {"DS", K_PLAIN, 0, N_NONE},
    {"DT", K_PLAIN, 0, N_NONE},   {"FD", K_OTHER, 0, N_FD},     {"FL", K_OTHER, 0, N_FL},
    {"IS", K_PLAIN, 0, N_NONE},   {"LO", K_CHARSET, 0, N_NONE}, {"LT", K_CHARSET, 0, N_NONE},
    {"OB", K_BINARY, 1, N_NONE},  {"OD", K_BINARY, 1, N_NONE},  {"OF", K_BINARY, 1, N_NONE},
    {"OL", K_BINARY, 1, N_NONE},  {"OV", K_BINARY, 1, N_NONE},  {"OW", K_BINARY, 1, N_NONE},
    {"PN", K_CHARSET, 0, N_NONE}, {"SH", K_CHARSET, 0, N_NONE}, {"SL", K_OTHER, 0, N_SL},
    {"SQ", K_OTHER, 1, N_NONE},   {"SS", K_OTHER, 0, N_SS},     {"ST", K_CHARSET, 0, N_NONE},
    {"SV", K_OTHER, 1, N_SV},     {"TM", K_PLAIN, 0, N_NONE},   {"UC", K_CHARSET, 1, N_NONE},
    {"UI", K_PLAIN, 0, N_NONE},   {"UL", K_OTHER, 0, N_UL},     {"UN", K_BINARY, 1, N_NONE},
    {"UR", K_PLAIN, 1, N_NONE},   {"US", K_OTHER, 0, N_US},     {"UT", K_CHARSET, 1, N_NONE},
    {"UV", K_OTHER, 1, N_UV},
};
#define N_VRS ((int)(sizeof(VRS) / sizeof(VRS[0])))
#define VR_NONE (-1)

static int VR_DS, VR_IS, VR_LO, VR_SQ, VR_SS, VR_UN, VR_US;
/* Two upper-case letters -> VR index, or -1. */
static signed char VR_BY_LETTERS[26 * 26];
static PyObject *VR_STR[N_VRS];  /* interned Python strings "AE", ... */
static PyObject *VR_BY_NAME;     /* dict str -> index, for VRs returned by Python helpers */

/* ---- what reader.py hands over in configure() ---------------------------------------------- */

static PyObject *Fallback;       /* exception class: "let the Python walker read this" */
static PyObject *NeedMore;       /* reader._NeedMore */
static PyObject *f_public_vr;    /* reader.public_vr(tag) -> str */
static PyObject *f_private_vr;   /* reader.private_vr(creator, tag) -> str */
static PyObject *f_known_vr_of_un; /* reader._known_vr_of_un(tag, creator, length) -> str */
static PyObject *f_ambiguous;    /* reader._ambiguous(tag) -> bool */

/* Interned attribute and method names. */
static PyObject *s_buf, *s_complete, *s_out, *s_tag, *s_vr, *s_value, *s_value_length, *s_seq_path,
    *s_private_creator, *s_n_items, *s_default_charset, *s_pixel_representation, *s_stop_offset,
    *s_pixel_offset, *s_pixel_length, *s_caveats, *s_encodings, *s_codec, *s_simple_charset,
    *s_set_charset, *s_text, *s_isdigit, *s_row_limit, *s_max_depth, *s_depth, *s_top_creators,
    *s_resume_pos, *s_top_prev_tag;
static PyObject *ONE;

/* public_vr() is a pure function of the tag: its answers are cached here (open addressing). */
#define PUB_SLOTS 8192
static uint32_t pub_tag[PUB_SLOTS];
static signed char pub_vr[PUB_SLOTS]; /* VR index + 1; 0 = empty slot */
static int pub_used;

/* Tags and lengths repeat across files: their Python ints are made once and shared (a list holds
 * a reference, so a shared int is as good as a new one, without the allocation). */
#define TAG_SLOTS 16384
static uint32_t tag_key[TAG_SLOTS];
static PyObject *tag_obj[TAG_SLOTS]; /* strong references, NULL = empty slot */
static int tag_used;
#define LEN_CACHED 4096
static PyObject *len_obj[LEN_CACHED];

/* A new reference to the int ``tag``. */
static PyObject *tag_int(uint32_t tag) {
    uint32_t h = (tag * 2654435761u) >> 18; /* 14 bits */
    for (int probe = 0; probe < 8; probe++) {
        uint32_t i = (h + (uint32_t)probe) & (TAG_SLOTS - 1);
        PyObject *o = tag_obj[i];
        if (o == NULL) {
            o = PyLong_FromUnsignedLong(tag);
            if (o != NULL && tag_used < TAG_SLOTS / 2) {
                tag_key[i] = tag;
                tag_obj[i] = o;
                tag_used++;
                Py_INCREF(o);
            }
            return o;
        }
        if (tag_key[i] == tag) {
            Py_INCREF(o);
            return o;
        }
    }
    return PyLong_FromUnsignedLong(tag);
}

/* A new reference to the int ``length``. */
static PyObject *length_int(uint32_t length) {
    if (length >= LEN_CACHED) return PyLong_FromUnsignedLong(length);
    PyObject *o = len_obj[length];
    if (o == NULL) {
        o = PyLong_FromUnsignedLong(length);
        if (o == NULL) return NULL;
        len_obj[length] = o;
    }
    Py_INCREF(o);
    return o;
}

/* ---- growable text ------------------------------------------------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Text;

static int text_grow(Text *t, Py_ssize_t more) {
    if (more < 0 || more > PY_SSIZE_T_MAX / 2 - t->len) { /* overflow-safe: len + more fits */
        PyErr_NoMemory();
        return -1;
    }
    if (t->len + more <= t->cap) return 0;
    Py_ssize_t cap = t->cap ? t->cap : 64;
    while (cap < t->len + more) cap *= 2; /* cannot overflow: len + more <= PY_SSIZE_T_MAX / 2 */
    char *data = PyMem_Realloc(t->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->data = data;
    t->cap = cap;
    return 0;
}

/* Room for ``more`` bytes after t->len (0 <= len <= cap always holds, so cap - len cannot overflow). */
static inline int text_reserve(Text *t, Py_ssize_t more) {
    if (more >= 0 && more <= t->cap - t->len) return 0;
    return text_grow(t, more);
}

static inline int text_add(Text *t, const char *s, Py_ssize_t n) {
    if (text_reserve(t, n) < 0) return -1;
    memcpy(t->data + t->len, s, (size_t)n);
    t->len += n;
    return 0;
}

/* ---- element columns: list-like objects over Arrow-ready C buffers ------------------------- */

/*
 * StrColumn and IntColumn stand in for the lists of reader.ElementColumns when the compiled module
 * is in use: the walker below writes a row's tag, VR, value text, length, path and creator straight
 * into their buffers (no Python object per element), and arrow() hands the buffers to pyarrow in
 * one copy. Python code (the Python walker the compiled one falls back to, the pydicom and DICOM
 * JSON readers, the tests) uses them as lists: append, len, col[i], col[a:b], iteration,
 * int_col[i] = x, del col[n:]. Only what those lists are used for is supported: a row is never
 * inserted or removed in the middle, and a text row is never replaced.
 *
 * Layout (Arrow's): a validity bitmap (bit i set = row i is not None); StrColumn: the UTF-8 of the
 * rows back to back and n + 1 64-bit offsets into it; IntColumn: one int64 per row.
 */

typedef struct {
    PyObject_HEAD
    Py_ssize_t n, cap; /* rows; rows the arrays below have room for */
    uint8_t *valid;    /* (cap + 7) / 8 bytes */
    int64_t *offsets;  /* cap + 1 entries, offsets[0] == 0 */
    Text data;
} StrColumn;

typedef struct {
    PyObject_HEAD
    Py_ssize_t n, cap;
    uint8_t *valid;
    int64_t *values; /* cap entries */
} IntColumn;

static PyTypeObject StrColumnType, IntColumnType;

static inline void set_valid(uint8_t *bits, Py_ssize_t i, int valid) {
    if (valid)
        bits[i >> 3] |= (uint8_t)(1u << (i & 7));
    else
        bits[i >> 3] &= (uint8_t)~(1u << (i & 7));
}

static inline int is_valid(const uint8_t *bits, Py_ssize_t i) { return (bits[i >> 3] >> (i & 7)) & 1; }

/* Room for row ``n`` (and, with ``extra`` = 1, the offset after it) in ``*valid`` and ``*values``. */
static int rows_grow(Py_ssize_t n, Py_ssize_t *cap, uint8_t **valid, int64_t **values, int extra) {
    if (n < *cap) return 0;
    Py_ssize_t want = *cap ? *cap : 64;
    while (want <= n) {
        if (want > PY_SSIZE_T_MAX / 32) { /* (want * 2 + 1) * 8 bytes must fit */
            PyErr_NoMemory();
            return -1;
        }
        want *= 2;
    }
    uint8_t *bits = PyMem_Realloc(*valid, (size_t)((want + 7) / 8));
    if (bits == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *valid = bits;
    int64_t *v = PyMem_Realloc(*values, (size_t)(want + extra) * sizeof(int64_t));
    if (v == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *values = v;
    *cap = want;
    return 0;
}

static inline int rows_reserve(Py_ssize_t n, Py_ssize_t *cap, uint8_t **valid, int64_t **values, int extra) {
    return n < *cap ? 0 : rows_grow(n, cap, valid, values, extra);
}

static inline int str_reserve_row(StrColumn *c) {
    return rows_reserve(c->n, &c->cap, &c->valid, &c->offsets, 1);
}

/* Close the row whose text was written at the end of c->data (room for it reserved). */
static inline void str_commit(StrColumn *c, int valid) {
    set_valid(c->valid, c->n, valid);
    c->offsets[c->n + 1] = (int64_t)c->data.len;
    c->n++;
}

/* Drop text written for a row that was not committed. */
static inline void str_abandon(StrColumn *c) { c->data.len = (Py_ssize_t)c->offsets[c->n]; }

static inline int str_put(StrColumn *c, const char *s, Py_ssize_t len) {
    if (str_reserve_row(c) < 0 || text_add(&c->data, s, len) < 0) {
        str_abandon(c);
        return -1;
    }
    str_commit(c, 1);
    return 0;
}

static inline int str_put_none(StrColumn *c) {
    if (str_reserve_row(c) < 0) return -1;
    str_commit(c, 0);
    return 0;
}

/* Append a str (its UTF-8) or None. */
static int str_put_object(StrColumn *c, PyObject *v) {
    if (v == Py_None) return str_put_none(c);
    if (!PyUnicode_Check(v)) {
        PyErr_Format(PyExc_TypeError, "a text column holds str or None, not %.100s", Py_TYPE(v)->tp_name);
        return -1;
    }
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(v, &size);
    if (utf8 == NULL) return -1;
    return str_put(c, utf8, size);
}

static void str_truncate(StrColumn *c, Py_ssize_t n) {
    if (n >= 0 && n < c->n) {
        c->n = n;
        c->data.len = (Py_ssize_t)c->offsets[n];
    }
}

/* Row i (0 <= i < n) as a new str, or None. */
static PyObject *str_get(StrColumn *c, Py_ssize_t i) {
    if (!is_valid(c->valid, i)) Py_RETURN_NONE;
    Py_ssize_t len = (Py_ssize_t)(c->offsets[i + 1] - c->offsets[i]);
    if (len == 0) return PyUnicode_New(0, 0);
    return PyUnicode_DecodeUTF8(c->data.data + c->offsets[i], len, NULL);
}

static inline int int_put(IntColumn *c, int64_t v, int valid) {
    if (rows_reserve(c->n, &c->cap, &c->valid, &c->values, 0) < 0) return -1;
    c->values[c->n] = valid ? v : 0;
    set_valid(c->valid, c->n, valid);
    c->n++;
    return 0;
}

/* An int (in int64 range) or None as (value, valid); -1 with an exception otherwise. */
static int int_of_object(PyObject *v, int64_t *out, int *valid) {
    if (v == Py_None) {
        *out = 0;
        *valid = 0;
        return 0;
    }
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "an integer column holds int or None, not %.100s", Py_TYPE(v)->tp_name);
        return -1;
    }
    long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    *out = (int64_t)x;
    *valid = 1;
    return 0;
}

static void int_truncate(IntColumn *c, Py_ssize_t n) {
    if (n >= 0 && n < c->n) c->n = n;
}

static PyObject *int_get(IntColumn *c, Py_ssize_t i) {
    if (!is_valid(c->valid, i)) Py_RETURN_NONE;
    return PyLong_FromLongLong((long long)c->values[i]);
}

typedef PyObject *(*row_getter)(PyObject *, Py_ssize_t);
static PyObject *str_get_o(PyObject *c, Py_ssize_t i) { return str_get((StrColumn *)c, i); }
static PyObject *int_get_o(PyObject *c, Py_ssize_t i) { return int_get((IntColumn *)c, i); }

static Py_ssize_t column_len(PyObject *self) { return ((StrColumn *)self)->n; }
static Py_ssize_t int_column_len(PyObject *self) { return ((IntColumn *)self)->n; }

/* col[key]: a row (negative indexes count from the end) or, for a slice, a list of rows. */
static PyObject *column_subscript(PyObject *self, PyObject *key, Py_ssize_t n, row_getter get) {
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) return NULL;
        if (i < 0) i += n;
        if (i < 0 || i >= n) {
            PyErr_SetString(PyExc_IndexError, "column index out of range");
            return NULL;
        }
        return get(self, i);
    }
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) return NULL;
        Py_ssize_t count = PySlice_AdjustIndices(n, &start, &stop, step);
        PyObject *list = PyList_New(count);
        if (list == NULL) return NULL;
        for (Py_ssize_t k = 0, i = start; k < count; k++, i += step) {
            PyObject *item = get(self, i);
            if (item == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, k, item);
        }
        return list;
    }
    PyErr_Format(PyExc_TypeError, "column indices must be integers or slices, not %.100s",
                 Py_TYPE(key)->tp_name);
    return NULL;
}

/* del col[key]: only ``del col[k:]`` (dropping the last rows), what ElementColumns.truncate does. */
static int column_delete(PyObject *key, Py_ssize_t n, Py_ssize_t *keep) {
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) return -1;
        Py_ssize_t count = PySlice_AdjustIndices(n, &start, &stop, step);
        if (count == 0) {
            *keep = n;
            return 0;
        }
        if (step == 1 && stop == n) {
            *keep = start;
            return 0;
        }
    }
    PyErr_SetString(PyExc_TypeError, "a column only drops its last rows (del col[k:])");
    return -1;
}

static PyObject *str_subscript(PyObject *self, PyObject *key) {
    return column_subscript(self, key, ((StrColumn *)self)->n, str_get_o);
}

static int str_ass_subscript(PyObject *self, PyObject *key, PyObject *value) {
    StrColumn *c = (StrColumn *)self;
    if (value != NULL) {
        PyErr_SetString(PyExc_TypeError, "a text column's rows are not replaced (append, del col[k:])");
        return -1;
    }
    Py_ssize_t keep;
    if (column_delete(key, c->n, &keep) < 0) return -1;
    str_truncate(c, keep);
    return 0;
}

static PyObject *int_subscript(PyObject *self, PyObject *key) {
    return column_subscript(self, key, ((IntColumn *)self)->n, int_get_o);
}

static int int_ass_subscript(PyObject *self, PyObject *key, PyObject *value) {
    IntColumn *c = (IntColumn *)self;
    if (value == NULL) {
        Py_ssize_t keep;
        if (column_delete(key, c->n, &keep) < 0) return -1;
        int_truncate(c, keep);
        return 0;
    }
    if (!PyIndex_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "an integer column sets one row at a time (col[i] = x)");
        return -1;
    }
    Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred()) return -1;
    if (i < 0) i += c->n;
    if (i < 0 || i >= c->n) {
        PyErr_SetString(PyExc_IndexError, "column assignment index out of range");
        return -1;
    }
    int64_t v;
    int valid;
    if (int_of_object(value, &v, &valid) < 0) return -1;
    c->values[i] = v;
    set_valid(c->valid, i, valid);
    return 0;
}

static PyObject *str_item(PyObject *self, Py_ssize_t i) {
    StrColumn *c = (StrColumn *)self;
    if (i < 0 || i >= c->n) {
        PyErr_SetString(PyExc_IndexError, "column index out of range");
        return NULL;
    }
    return str_get(c, i);
}

static PyObject *int_item(PyObject *self, Py_ssize_t i) {
    IntColumn *c = (IntColumn *)self;
    if (i < 0 || i >= c->n) {
        PyErr_SetString(PyExc_IndexError, "column index out of range");
        return NULL;
    }
    return int_get(c, i);
}

static PyObject *str_append(PyObject *self, PyObject *v) {
    if (str_put_object((StrColumn *)self, v) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *int_append(PyObject *self, PyObject *v) {
    int64_t x;
    int valid;
    if (int_of_object(v, &x, &valid) < 0 || int_put((IntColumn *)self, x, valid) < 0) return NULL;
    Py_RETURN_NONE;
}

/* col.index(x): the first row equal to x, as list.index. */
static PyObject *column_index(PyObject *self, PyObject *x, Py_ssize_t n, row_getter get) {
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = get(self, i);
        if (item == NULL) return NULL;
        int same = PyObject_RichCompareBool(item, x, Py_EQ);
        Py_DECREF(item);
        if (same < 0) return NULL;
        if (same) return PyLong_FromSsize_t(i);
    }
    PyErr_SetString(PyExc_ValueError, "value is not in the column");
    return NULL;
}

static PyObject *str_index(PyObject *self, PyObject *x) {
    return column_index(self, x, ((StrColumn *)self)->n, str_get_o);
}

static PyObject *int_index(PyObject *self, PyObject *x) {
    return column_index(self, x, ((IntColumn *)self)->n, int_get_o);
}

/* The validity bitmap of rows 0..n as a new bytes object (bits past n cleared), or None when no
 * row is None; *nulls is set to the number of None rows. */
static PyObject *export_validity(const uint8_t *bits, Py_ssize_t n, Py_ssize_t *nulls) {
    Py_ssize_t set = 0, full = n / 8;
    for (Py_ssize_t b = 0; b < full; b++) set += __builtin_popcount(bits[b]);
    uint8_t last = n % 8 ? (uint8_t)(bits[full] & ((1u << (n % 8)) - 1)) : 0;
    set += __builtin_popcount(last);
    *nulls = n - set;
    if (*nulls == 0) Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (n + 7) / 8);
    if (out == NULL) return NULL;
    memcpy(PyBytes_AS_STRING(out), bits, (size_t)full);
    if (n % 8) PyBytes_AS_STRING(out)[full] = (char)last;
    return out;
}

PyDoc_STRVAR(str_arrow_doc,
             "arrow() -> (validity, offsets, data, null_count)\n\n"
             "The buffers of an Arrow string array of the rows (int32 offsets; validity is None when\n"
             "no row is None). OverflowError past 2 GiB of text, which one string array cannot hold.");

static PyObject *str_arrow(PyObject *self, PyObject *unused) {
    StrColumn *c = (StrColumn *)self;
    Py_ssize_t n = c->n, nulls;
    int64_t total = c->offsets[n];
    if (total > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "more than 2 GiB of text in one element column");
        return NULL;
    }
    PyObject *validity = NULL, *offsets = NULL, *data = NULL, *result = NULL;
    if ((validity = export_validity(c->valid, n, &nulls)) == NULL) goto done;
    if ((offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * 4)) == NULL) goto done;
    int32_t *off = (int32_t *)PyBytes_AS_STRING(offsets);
    for (Py_ssize_t i = 0; i <= n; i++) off[i] = (int32_t)c->offsets[i]; /* <= total <= INT32_MAX */
    if ((data = PyBytes_FromStringAndSize(c->data.data ? c->data.data : "", (Py_ssize_t)total)) == NULL)
        goto done;
    result = Py_BuildValue("(OOOn)", validity, offsets, data, nulls);
done:
    Py_XDECREF(validity);
    Py_XDECREF(offsets);
    Py_XDECREF(data);
    return result;
}

PyDoc_STRVAR(int_arrow_doc,
             "arrow(kind) -> (validity, data, null_count)\n\n"
             "The buffers of an Arrow integer array of the rows: kind 'q' int64, 'i' int32, 'I' uint32\n"
             "(OverflowError for a row out of its range; validity is None when no row is None).");

static PyObject *int_arrow(PyObject *self, PyObject *arg) {
    IntColumn *c = (IntColumn *)self;
    const char *kind = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (kind == NULL || (strcmp(kind, "q") && strcmp(kind, "i") && strcmp(kind, "I"))) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "arrow(): kind must be 'q', 'i' or 'I'");
        return NULL;
    }
    Py_ssize_t n = c->n, nulls;
    PyObject *validity = export_validity(c->valid, n, &nulls), *data = NULL, *result = NULL;
    if (validity == NULL) return NULL;
    if (kind[0] == 'q') {
        data = PyBytes_FromStringAndSize((const char *)c->values, n * 8);
    } else if ((data = PyBytes_FromStringAndSize(NULL, n * 4)) != NULL) {
        int64_t lo = kind[0] == 'i' ? INT32_MIN : 0, hi = kind[0] == 'i' ? INT32_MAX : UINT32_MAX;
        char *out = PyBytes_AS_STRING(data);
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t v = is_valid(c->valid, i) ? c->values[i] : 0;
            if (v < lo || v > hi) {
                PyErr_Format(PyExc_OverflowError, "row %zd (%lld) is out of range for '%s'", i, (long long)v,
                             kind);
                Py_CLEAR(data);
                break;
            }
            uint32_t u = (uint32_t)v; /* two's complement for int32 */
            memcpy(out + i * 4, &u, 4);
        }
    }
    if (data != NULL) result = Py_BuildValue("(OOn)", validity, data, nulls);
    Py_DECREF(validity);
    Py_XDECREF(data);
    return result;
}

/* The buffers of freed columns, kept for the next ones: a reader makes the same seven columns
 * for every batch, and reusing their memory saves growing it again (copies) and the kernel's
 * zeroing of fresh pages, measured as a large share of filling them. At most POOL_SIZE buffer
 * sets of each type, each at most POOL_BYTES, are kept. */
#define POOL_SIZE 8
#define POOL_BYTES ((Py_ssize_t)64 << 20)
typedef struct {
    Py_ssize_t cap;
    uint8_t *valid;
    int64_t *values;
    Text data;
} Buffers;
static Buffers str_pool[POOL_SIZE], int_pool[POOL_SIZE];
static int str_pooled, int_pooled;

static PyObject *str_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "StrColumn() takes no arguments");
        return NULL;
    }
    StrColumn *c = (StrColumn *)type->tp_alloc(type, 0);
    if (c == NULL) return NULL;
    if (str_pooled > 0) {
        Buffers *b = &str_pool[--str_pooled];
        c->cap = b->cap;
        c->valid = b->valid;
        c->offsets = b->values;
        c->data = b->data;
        c->data.len = 0;
    } else if (rows_reserve(0, &c->cap, &c->valid, &c->offsets, 1) < 0) {
        Py_DECREF(c);
        return NULL;
    }
    c->offsets[0] = 0; /* offsets[0] must exist before the first row */
    return (PyObject *)c;
}

static void str_dealloc(PyObject *self) {
    StrColumn *c = (StrColumn *)self;
    if (str_pooled < POOL_SIZE && c->offsets != NULL && c->cap <= POOL_BYTES / 8 && c->data.cap <= POOL_BYTES) {
        Buffers b = {c->cap, c->valid, c->offsets, c->data};
        str_pool[str_pooled++] = b;
    } else {
        PyMem_Free(c->valid);
        PyMem_Free(c->offsets);
        PyMem_Free(c->data.data);
    }
    Py_TYPE(self)->tp_free(self);
}

static PyObject *int_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if (PyTuple_GET_SIZE(args) || (kwds && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "IntColumn() takes no arguments");
        return NULL;
    }
    IntColumn *c = (IntColumn *)type->tp_alloc(type, 0);
    if (c != NULL && int_pooled > 0) {
        Buffers *b = &int_pool[--int_pooled];
        c->cap = b->cap;
        c->valid = b->valid;
        c->values = b->values;
    }
    return (PyObject *)c;
}

static void int_dealloc(PyObject *self) {
    IntColumn *c = (IntColumn *)self;
    if (int_pooled < POOL_SIZE && c->values != NULL && c->cap <= POOL_BYTES / 8) {
        Buffers b = {c->cap, c->valid, c->values, {NULL, 0, 0}};
        int_pool[int_pooled++] = b;
    } else {
        PyMem_Free(c->valid);
        PyMem_Free(c->values);
    }
    Py_TYPE(self)->tp_free(self);
}

static PyMethodDef str_methods[] = {
    {"append", str_append, METH_O, "Append a str or None."},
    {"index", str_index, METH_O, "The first row equal to the value (ValueError if none)."},
    {"arrow", str_arrow, METH_NOARGS, str_arrow_doc},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef int_methods[] = {
    {"append", int_append, METH_O, "Append an int (int64 range) or None."},
    {"index", int_index, METH_O, "The first row equal to the value (ValueError if none)."},
    {"arrow", int_arrow, METH_O, int_arrow_doc},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods str_as_sequence = {.sq_length = column_len, .sq_item = str_item};
static PyMappingMethods str_as_mapping = {column_len, str_subscript, str_ass_subscript};
static PySequenceMethods int_as_sequence = {.sq_length = int_column_len, .sq_item = int_item};
static PyMappingMethods int_as_mapping = {int_column_len, int_subscript, int_ass_subscript};

static PyTypeObject StrColumnType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "curation.crawler._walker.StrColumn",
    .tp_doc = "A column of str or None rows in Arrow-ready buffers, used as a list (see _walker.c).",
    .tp_basicsize = sizeof(StrColumn),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = str_new,
    .tp_dealloc = str_dealloc,
    .tp_as_sequence = &str_as_sequence,
    .tp_as_mapping = &str_as_mapping,
    .tp_methods = str_methods,
};

static PyTypeObject IntColumnType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "curation.crawler._walker.IntColumn",
    .tp_doc = "A column of int (int64) or None rows in Arrow-ready buffers, used as a list.",
    .tp_basicsize = sizeof(IntColumn),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = int_new,
    .tp_dealloc = int_dealloc,
    .tp_as_sequence = &int_as_sequence,
    .tp_as_mapping = &int_as_mapping,
    .tp_methods = int_methods,
};

/* ---- one walk ------------------------------------------------------------------------------ */

typedef struct {
    PyObject *walker;
    const unsigned char *buf;
    Py_ssize_t buflen;
    int complete;
    PyObject *l_tag, *l_vr, *l_val, *l_len, *l_path, *l_cre, *l_items; /* walker.out's columns */
    /* When they are the compiled columns (cmode), the same objects: rows go into their buffers. */
    int cmode;
    IntColumn *c_tag, *c_len, *c_items;
    StrColumn *c_vr, *c_val, *c_path, *c_cre;
    Py_ssize_t row_limit;  /* walker.row_limit: more rows than this is the Python walker's error */
    long max_depth;        /* walker.max_depth */
    long depth0;           /* walker.depth when this call began (sequences around it) */
    int default_charset;
    int pr_one;          /* walker.pixel_representation == 1 */
    PyObject *pr_new;    /* a PixelRepresentation read by this walk (set on success) */
    int stopped;
    Py_ssize_t stop_offset, pixel_offset, pixel_length;
    int has_pixel_length;
    Py_ssize_t resume_pos; /* start of the top-level element being read (walker.resume_pos) */
    Py_ssize_t top_prev;   /* the top-level tag before it, -1 if none (walker.top_prev_tag) */
    /* The walker's character set (encodings, codec, simple_charset, default_charset) now and
     * when this call began; its caveats list and length then; its top-level private creators and
     * a copy of them from before this call changed them: what a Fallback puts back. */
    PyObject *charset, *charset0;
    PyObject *caveats;
    Py_ssize_t n_caveats0;
    PyObject *top_creators, *top_creators0;
} W;


static inline uint16_t u16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static int bail(void) {
    PyErr_SetNone(Fallback);
    return -1;
}

/* After a Python helper failed: an ordinary exception becomes Fallback (the Python walker will meet
 * it again and handle it as it does); KeyboardInterrupt, MemoryError and the like propagate. */
static int helper_failed(void) {
    if (PyErr_ExceptionMatches(PyExc_Exception) && !PyErr_ExceptionMatches(PyExc_MemoryError)) {
        PyErr_Clear();
        return bail();
    }
    return -1;
}

static int need_more(Py_ssize_t end) {
    PyObject *exc = PyObject_CallFunction(NeedMore, "n", end);
    if (exc == NULL) return -1;
    PyErr_SetObject(NeedMore, exc);
    Py_DECREF(exc);
    return -1;
}

/* Where the Python walk says "if self.complete: raise DicomReadError(...); raise _NeedMore(x)". */
static int short_read(W *w, Py_ssize_t end) {
    if (w->complete) return bail();
    return need_more(end);
}

static int vr_index_of(PyObject *name) {
    if (!PyUnicode_Check(name)) return VR_NONE;
    PyObject *idx = PyDict_GetItemWithError(VR_BY_NAME, name);
    if (idx == NULL) return VR_NONE;
    return (int)PyLong_AsLong(idx);
}

/* Call a Python helper returning a VR string; -2 with an exception set on failure. */
static int vr_from_call(PyObject *result) {
    if (result == NULL) {
        helper_failed();
        return -2;
    }
    int vr = vr_index_of(result);
    Py_DECREF(result);
    if (vr == VR_NONE) {
        if (PyErr_Occurred()) PyErr_Clear();
        bail(); /* a VR the Python walker's tables do not know either: its own path */
        return -2;
    }
    return vr;
}

static int public_vr(uint32_t tag) {
    uint32_t h = (tag * 2654435761u) & (PUB_SLOTS - 1);
    for (int probe = 0; probe < PUB_SLOTS; probe++) {
        uint32_t i = (h + (uint32_t)probe) & (PUB_SLOTS - 1);
        if (pub_vr[i] == 0) break;
        if (pub_tag[i] == tag) return pub_vr[i] - 1;
    }
    int vr = vr_from_call(PyObject_CallFunction(f_public_vr, "k", (unsigned long)tag));
    if (vr < 0) return vr;
    if (pub_used < PUB_SLOTS / 2) {
        for (int probe = 0; probe < PUB_SLOTS; probe++) {
            uint32_t i = (h + (uint32_t)probe) & (PUB_SLOTS - 1);
            if (pub_vr[i] == 0) {
                pub_tag[i] = tag;
                pub_vr[i] = (signed char)(vr + 1);
                pub_used++;
                break;
            }
        }
    }
    return vr;
}

static PyObject *const *charset_names(void) {
    static PyObject *names[4];
    names[0] = s_encodings;
    names[1] = s_codec;
    names[2] = s_simple_charset;
    names[3] = s_default_charset;
    return names;
}

/* The walker's character set now, as a new 4-tuple. */
static PyObject *get_charset(W *w) {
    PyObject *const *names = charset_names();
    PyObject *t = PyTuple_New(4);
    if (t == NULL) return NULL;
    for (int i = 0; i < 4; i++) {
        PyObject *v = PyObject_GetAttr(w->walker, names[i]);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static int note_charset(W *w, PyObject *t) {
    int truth = PyObject_IsTrue(PyTuple_GET_ITEM(t, 3));
    if (truth < 0) return -1;
    w->default_charset = truth;
    Py_INCREF(t);
    Py_XSETREF(w->charset, t);
    return 0;
}

/* Put the character set ``t`` (a tuple from get_charset) back on the walker. */
static int set_charset(W *w, PyObject *t) {
    if (t == w->charset) return 0;
    PyObject *const *names = charset_names();
    for (int i = 0; i < 4; i++)
        if (PyObject_SetAttr(w->walker, names[i], PyTuple_GET_ITEM(t, i)) < 0) return -1;
    return note_charset(w, t);
}

/* walker._set_charset(value), then what it set. */
static int call_set_charset(W *w, PyObject *value) {
    PyObject *r = PyObject_CallMethodOneArg(w->walker, s_set_charset, value);
    if (r == NULL) return helper_failed();
    Py_DECREF(r);
    PyObject *t = get_charset(w);
    if (t == NULL) return helper_failed();
    int rc = note_charset(w, t);
    Py_DECREF(t);
    return rc < 0 ? helper_failed() : 0;
}

static int truncate_caveats(W *w, Py_ssize_t n) {
    Py_ssize_t have = PyList_GET_SIZE(w->caveats);
    if (have > n) return PyList_SetSlice(w->caveats, n, have, NULL);
    return 0;
}

/* On Fallback: undo what this call changed on the walker (the error in flight is kept). */
static void restore(W *w) {
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    if (w->charset0 != NULL && set_charset(w, w->charset0) < 0) PyErr_Clear();
    if (w->caveats != NULL && truncate_caveats(w, w->n_caveats0) < 0) PyErr_Clear();
    if (w->top_creators0 != NULL) {
        PyDict_Clear(w->top_creators);
        if (PyDict_Update(w->top_creators, w->top_creators0) < 0) PyErr_Clear();
    }
    PyErr_Restore(et, ev, tb);
}

/* Rows in walker.out now. */
static inline Py_ssize_t nrows(W *w) { return w->cmode ? w->c_tag->n : PyList_GET_SIZE(w->l_tag); }

/* Drop every row from ``row`` on. */
static int truncate_rows(W *w, Py_ssize_t row) {
    if (w->cmode) {
        int_truncate(w->c_tag, row);
        str_truncate(w->c_vr, row);
        str_truncate(w->c_val, row);
        int_truncate(w->c_len, row);
        str_truncate(w->c_path, row);
        str_truncate(w->c_cre, row);
        int_truncate(w->c_items, row);
        return 0;
    }
    PyObject *lists[7] = {w->l_tag, w->l_vr, w->l_val, w->l_len, w->l_path, w->l_cre, w->l_items};
    for (int i = 0; i < 7; i++) {
        Py_ssize_t have = PyList_GET_SIZE(lists[i]);
        if (have > row && PyList_SetSlice(lists[i], row, have, NULL) < 0) return -1;
    }
    return 0;
}

/* ---- values -------------------------------------------------------------------------------- */

static inline Py_ssize_t stripped_length(const unsigned char *p, Py_ssize_t n) {
    while (n > 0 && (p[n - 1] == 0 || p[n - 1] == ' ')) n--;
    return n;
}

/* bytes.decode("latin-1").rstrip("\x00 "): latin-1 maps bytes to code points one to one. */
static PyObject *latin1_stripped(const unsigned char *p, Py_ssize_t n) {
    return PyUnicode_DecodeLatin1((const char *)p, stripped_length(p, n), NULL);
}

/* The same text as UTF-8, added to ``t``: a byte >= 0x80 is the code point U+0080..U+00FF. */
static int latin1_into(Text *t, const unsigned char *p, Py_ssize_t n) {
    n = stripped_length(p, n);
    if (text_reserve(t, 2 * n) < 0) return -1; /* n <= 0xFFFFFFFF: 2n fits in 64 bits */
    unsigned char *o = (unsigned char *)t->data + t->len;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c < 0x80) {
            *o++ = c;
        } else {
            *o++ = (unsigned char)(0xC0 | (c >> 6));
            *o++ = (unsigned char)(0x80 | (c & 0x3F));
        }
    }
    t->len = (Py_ssize_t)(o - (unsigned char *)t->data);
    return 0;
}

static const int NUMERIC_SIZES[] = {0, 2, 2, 4, 4, 4, 8, 8, 8, 4};

/* Decimal digits of v at out (room for 20); their count. snprintf's format parsing cost more than
 * the rest of writing a row. */
static int format_u64(char *out, uint64_t v) {
    char tmp[20];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < k; i++) out[i] = tmp[k - 1 - i];
    return k;
}

static int format_i64(char *out, int64_t v) {
    if (v >= 0) return format_u64(out, (uint64_t)v);
    out[0] = '-';
    return 1 + format_u64(out + 1, (uint64_t)0 - (uint64_t)v);
}

static const char HEX[] = "0123456789ABCDEF";

/* The shortest repr of a double (PyOS_double_to_string, what str(float) calls) is the costliest part
 * of reading a dense header, and the images of a series share most of their values: the texts of
 * recent doubles are kept by their bit pattern (direct-mapped, a new one replaces an old one). */
#define FLOAT_SLOTS 4096
typedef struct {
    uint64_t bits;
    uint8_t len; /* 0: empty slot */
    char text[31];
} FloatText;
static FloatText float_texts[FLOAT_SLOTS];

/* repr(d) added to ``t``. */
static int float_into(Text *t, double d) {
    uint64_t bits;
    memcpy(&bits, &d, 8);
    FloatText *slot = &float_texts[(bits * 0x9E3779B97F4A7C15ull) >> 52]; /* 12 bits */
    if (slot->len && slot->bits == bits) return text_add(t, slot->text, slot->len);
    char *text = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) return -1;
    size_t len = strlen(text);
    if (len < sizeof slot->text) {
        slot->bits = bits;
        slot->len = (uint8_t)len;
        memcpy(slot->text, text, len);
    }
    int rc = text_add(t, text, (Py_ssize_t)len);
    PyMem_Free(text);
    return rc;
}

/* %04X of v at out. */
static void format_hex4(char *out, unsigned v) {
    for (int i = 3; i >= 0; i--, v >>= 4) out[i] = HEX[v & 15];
}

/* str() of each binary number, joined by a backslash (reader._Walker._numbers and AT values),
 * added to ``t``; ``n`` must be a multiple of the VR's size (the caller checks). */
static int numbers_into(Text *t, const unsigned char *p, Py_ssize_t n, int numeric) {
    int size = NUMERIC_SIZES[numeric];
    Py_ssize_t count = n / size;
    char one[40];
    for (Py_ssize_t i = 0; i < count; i++) {
        const unsigned char *q = p + i * size;
        int k = 0;
        int is_float = 0;
        double d = 0;
        switch (numeric) {
        case N_US: k = format_u64(one, u16(q)); break;
        case N_SS: k = format_i64(one, (int16_t)u16(q)); break;
        case N_UL: k = format_u64(one, u32(q)); break;
        case N_SL: k = format_i64(one, (int32_t)u32(q)); break;
        case N_SV:
        case N_UV: {
            uint64_t v = (uint64_t)u32(q) | ((uint64_t)u32(q + 4) << 32);
            k = numeric == N_SV ? format_i64(one, (int64_t)v) : format_u64(one, v);
            break;
        }
        case N_FL:
        case N_FD: {
            if (numeric == N_FL) {
                uint32_t bits = u32(q);
                float f;
                memcpy(&f, &bits, 4);
                d = (double)f;
            } else {
                uint64_t bits = (uint64_t)u32(q) | ((uint64_t)u32(q + 4) << 32);
                memcpy(&d, &bits, 8);
            }
            if (d > -1e16 && d < 1e16 && (double)(int64_t)d == d) {
                /* A whole number under 1e16: repr() writes its digits and ".0" (1e16 and up in
                 * exponent form), and "-0.0" for negative zero. */
                int64_t whole = (int64_t)d;
                k = whole == 0 && signbit(d) ? (one[0] = '-', 1 + format_u64(one + 1, 0)) : format_i64(one, whole);
                one[k++] = '.';
                one[k++] = '0';
                break;
            }
            is_float = 1;
            break;
        }
        case N_AT:
            format_hex4(one, u16(q));
            format_hex4(one + 4, u16(q + 2));
            k = 8;
            break;
        }
        int rc = 0;
        if (i > 0) rc = text_add(t, "\\", 1);
        if (rc == 0) rc = is_float ? float_into(t, d) : text_add(t, one, k);
        if (rc < 0) return -1;
    }
    return 0;
}

/* numbers_into as a new str. */
static PyObject *numbers_text(const unsigned char *p, Py_ssize_t n, int numeric) {
    Text t = {NULL, 0, 0};
    if (numbers_into(&t, p, n, numeric) < 0) {
        PyMem_Free(t.data);
        return NULL;
    }
    PyObject *s = PyUnicode_DecodeASCII(t.data ? t.data : "", t.len, NULL);
    PyMem_Free(t.data);
    return s;
}

/* A row's value: None, a str the walker made, or bytes the row's text is made from. */
enum { V_NONE, V_OBJECT, V_LATIN1, V_NUMBERS };
typedef struct {
    int kind;
    PyObject *object;         /* V_OBJECT: a borrowed str */
    const unsigned char *raw; /* V_LATIN1, V_NUMBERS: the value's bytes */
    Py_ssize_t n;
    int numeric;
} Value;

/* A value's text written into the value column: for the compiled columns. */
static int value_into(StrColumn *c, const Value *v) {
    if (v->kind == V_NONE) return str_put_none(c);
    if (v->kind == V_OBJECT) {
        if (!PyUnicode_Check(v->object)) return bail(); /* a helper gave a non-str: Python's path */
        return str_put_object(c, v->object);
    }
    if (str_reserve_row(c) < 0) return -1;
    int rc = v->kind == V_LATIN1 ? latin1_into(&c->data, v->raw, v->n)
                                 : numbers_into(&c->data, v->raw, v->n, v->numeric);
    if (rc < 0) {
        str_abandon(c);
        return -1;
    }
    str_commit(c, 1);
    return 0;
}

/* A value as a new reference (None included): for the lists. */
static PyObject *value_object(const Value *v) {
    switch (v->kind) {
    case V_OBJECT: Py_INCREF(v->object); return v->object;
    case V_LATIN1: return latin1_stripped(v->raw, v->n);
    case V_NUMBERS: return numbers_text(v->raw, v->n, v->numeric);
    default: Py_RETURN_NONE;
    }
}

static int str_put_utf8_of(StrColumn *c, PyObject *s) {
    if (s == NULL) return str_put_none(c);
    if (!PyUnicode_Check(s)) return bail();
    return str_put_object(c, s);
}

/* Append one row. ``length`` and ``n_items`` < 0 mean None; ``creator`` NULL means None. */
static int append_row(W *w, uint32_t tag, int vr, const Value *value, int64_t length, PyObject *path,
                      PyObject *creator, int64_t n_items) {
    if (w->cmode) {
        Py_ssize_t row = w->c_tag->n;
        if (int_put(w->c_tag, tag, 1) < 0 || str_put(w->c_vr, VRS[vr].name, 2) < 0 ||
            value_into(w->c_val, value) < 0 || int_put(w->c_len, length, length >= 0) < 0 ||
            str_put_utf8_of(w->c_path, path) < 0 || str_put_utf8_of(w->c_cre, creator) < 0 ||
            int_put(w->c_items, n_items, n_items >= 0) < 0) {
            truncate_rows(w, row); /* all columns keep the same number of rows */
            return -1;
        }
        return 0;
    }
    int rc = -1;
    PyObject *t = tag_int(tag), *v = NULL, *len = NULL, *items = NULL;
    if (t == NULL || (v = value_object(value)) == NULL) goto done;
    if (length < 0) {
        len = Py_None;
        Py_INCREF(len);
    } else if ((len = length_int((uint32_t)length)) == NULL) {
        goto done;
    }
    if (n_items < 0) {
        items = Py_None;
        Py_INCREF(items);
    } else if ((items = PyLong_FromLongLong((long long)n_items)) == NULL) {
        goto done;
    }
    if (PyList_Append(w->l_tag, t) < 0) goto done;
    if (PyList_Append(w->l_vr, VR_STR[vr]) < 0) goto done;
    if (PyList_Append(w->l_val, v) < 0) goto done;
    if (PyList_Append(w->l_len, len) < 0) goto done;
    if (PyList_Append(w->l_path, path) < 0) goto done;
    if (PyList_Append(w->l_cre, creator ? creator : Py_None) < 0) goto done;
    if (PyList_Append(w->l_items, items) < 0) goto done;
    rc = 0;
done:
    Py_XDECREF(t);
    Py_XDECREF(v);
    Py_XDECREF(len);
    Py_XDECREF(items);
    return rc;
}

/* Row ``row``'s n_items. */
static int set_n_items(W *w, Py_ssize_t row, long n) {
    if (w->cmode) {
        if (row < 0 || row >= w->c_items->n) return bail();
        w->c_items->values[row] = n;
        set_valid(w->c_items->valid, row, 1);
        return 0;
    }
    PyObject *count = PyLong_FromLong(n);
    if (count == NULL) return -1;
    return PyList_SetItem(w->l_items, row, count); /* steals count */
}

/* ---- private creators of one dataset -------------------------------------------------------- */

/* A sequence item's private blocks (a C table); the top-level dataset's are the walker's own dict,
 * top_creators, which outlives one call (the top-level walk may be continued). */
typedef struct {
    int n;
    PyObject *dict; /* top level: walker.top_creators (borrowed); else NULL */
    uint32_t key[MAX_CREATORS];
    PyObject *value[MAX_CREATORS]; /* strong references */
} Creators;

/* Borrowed reference to the creator of block ``key``, NULL if none (check PyErr_Occurred). */
static PyObject *creator_get(Creators *c, uint32_t key) {
    if (c->dict != NULL) {
        if (PyDict_GET_SIZE(c->dict) == 0) return NULL;
        PyObject *k = PyLong_FromUnsignedLong(key);
        if (k == NULL) return NULL;
        PyObject *v = PyDict_GetItemWithError(c->dict, k);
        Py_DECREF(k);
        return v;
    }
    for (int i = 0; i < c->n; i++)
        if (c->key[i] == key) return c->value[i];
    return NULL;
}

static int creator_set(W *w, Creators *c, uint32_t key, PyObject *value) {
    if (c->dict != NULL) {
        if (w->top_creators0 == NULL && (w->top_creators0 = PyDict_Copy(c->dict)) == NULL) return -1;
        PyObject *k = PyLong_FromUnsignedLong(key);
        if (k == NULL) return -1;
        int rc = PyDict_SetItem(c->dict, k, value);
        Py_DECREF(k);
        return rc;
    }
    for (int i = 0; i < c->n; i++) {
        if (c->key[i] == key) {
            Py_INCREF(value);
            Py_SETREF(c->value[i], value);
            return 0;
        }
    }
    if (c->n == MAX_CREATORS) return bail();
    Py_INCREF(value);
    c->key[c->n] = key;
    c->value[c->n] = value;
    c->n++;
    return 0;
}

static void creators_clear(Creators *c) {
    for (int i = 0; i < c->n; i++) Py_CLEAR(c->value[i]);
    c->n = 0;
}

/* ---- structure ----------------------------------------------------------------------------- */

static Py_ssize_t walk(W *w, Py_ssize_t pos, Py_ssize_t end, PyObject *path, int top, int explicit_vr,
                       int depth);

/* _Walker._sequence: ``depth`` is the number of sequences around it within this call. */
static Py_ssize_t sequence(W *w, Py_ssize_t pos, uint32_t length, uint32_t tag, PyObject *path,
                           PyObject *creator, int encoded_un, int explicit_vr, int depth) {
    if (w->depth0 + depth >= w->max_depth || depth >= MAX_DEPTH) return bail(); /* too_deep */
    const unsigned char *buf = w->buf;
    Py_ssize_t buflen = w->buflen;
    Py_ssize_t row = nrows(w);
    Py_ssize_t n_caveats = PyList_GET_SIZE(w->caveats);
    PyObject *charset = w->charset; /* the character set before the sequence */
    Py_INCREF(charset);
    PyObject *prefix = NULL;
    Py_ssize_t result = -1;
    long n = 0;
    const Value none = {V_NONE, NULL, NULL, 0, 0};
    if (append_row(w, tag, VR_SQ, &none, length == UNDEFINED ? -1 : (int64_t)length, path, creator, 0) < 0)
        goto done;
    char hex[9];
    snprintf(hex, sizeof hex, "%08X", (unsigned int)tag);
    if (PyUnicode_GET_LENGTH(path))
        prefix = PyUnicode_FromFormat("%U/%s", path, hex);
    else
        prefix = PyUnicode_FromString(hex);
    if (prefix == NULL) goto done;
    if (encoded_un) {
        /* A sequence written as UN is encoded implicit VR little endian (PS3.5 6.2.2). */
        if (pos + 4 <= buflen) {
            uint16_t g = u16(buf + pos), e = u16(buf + pos + 2);
            if (!(g == 0xFFFE && (e == 0xE000 || e == 0xE0DD))) {
                bail();
                goto done;
            }
        }
        explicit_vr = 0;
    }
    Py_ssize_t end = length == UNDEFINED ? -1 : pos + (Py_ssize_t)length;
    if (end >= 0 && end > buflen) {
        short_read(w, end);
        goto done;
    }
    while (end < 0 || pos < end) {
        if (pos + 8 > buflen) {
            short_read(w, pos + 8);
            goto done;
        }
        uint32_t itag = (uint32_t)u16(buf + pos) << 16 | u16(buf + pos + 2);
        uint32_t ilen = u32(buf + pos + 4);
        pos += 8;
        if (itag == SEQ_DELIM) break;
        if (itag != ITEM || nrows(w) + n >= w->row_limit) {
            bail(); /* bad_length, header_too_large */
            goto done;
        }
        PyObject *item_path = PyUnicode_FromFormat("%U[%ld]", prefix, n);
        if (item_path == NULL) goto done;
        n++;
        if (ilen == UNDEFINED) {
            pos = walk(w, pos, -1, item_path, 0, explicit_vr, depth + 1);
        } else {
            Py_ssize_t iend = pos + (Py_ssize_t)ilen;
            if (end >= 0 && iend > end)
                pos = bail();
            else if (iend > buflen)
                pos = short_read(w, iend);
            else
                pos = walk(w, pos, iend, item_path, 0, explicit_vr, depth + 1);
        }
        Py_DECREF(item_path);
        if (pos < 0) goto done;
    }
    if (set_n_items(w, row, n) < 0) goto done;
    result = pos;
done:
    if (result < 0 && PyErr_ExceptionMatches(NeedMore)) {
        /* The top-level walk goes on later from before this sequence: drop what was read of it,
         * and leave the character set and caveats as they were before. */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        int rc = truncate_rows(w, row);
        if (rc == 0) rc = truncate_caveats(w, n_caveats);
        if (rc == 0) rc = set_charset(w, charset);
        if (rc < 0) {
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(tb);
            helper_failed();
        } else {
            PyErr_Restore(et, ev, tb);
        }
    }
    Py_XDECREF(prefix);
    Py_DECREF(charset);
    return result;
}

/* value.isdigit() and int(value), as the Python walk reads PixelRepresentation. */
static int pixel_representation(W *w, PyObject *value) {
    PyObject *digit = PyObject_CallMethodNoArgs(value, s_isdigit);
    if (digit == NULL) return helper_failed();
    int is_digit = PyObject_IsTrue(digit);
    Py_DECREF(digit);
    if (!is_digit) return 0;
    PyObject *number = PyLong_FromUnicodeObject(value, 10);
    if (number == NULL) return helper_failed();
    int one = PyObject_RichCompareBool(number, ONE, Py_EQ);
    if (one < 0) {
        Py_DECREF(number);
        return helper_failed();
    }
    w->pr_one = one;
    Py_XSETREF(w->pr_new, number);
    return 0;
}

static Py_ssize_t walk(W *w, Py_ssize_t pos, Py_ssize_t end, PyObject *path, int top, int explicit_vr,
                       int depth) {
    const unsigned char *buf = w->buf;
    const Py_ssize_t buflen = w->buflen;
    const Py_ssize_t limit = end < 0 ? buflen : end;
    Creators *creators = PyMem_Malloc(sizeof(Creators));
    if (creators == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    creators->n = 0;
    creators->dict = top ? w->top_creators : NULL;
    PyObject *saved = NULL; /* the character set before an item's own SpecificCharacterSet */
    Py_ssize_t result = -1;
    /* Tags ascend within a dataset: a repeat or a step back is a caveat of the Python walker's. */
    Py_ssize_t prev_tag = top ? w->top_prev : -1;
#define FAIL(expr) \
    do {           \
        (expr);    \
        goto done; \
    } while (0)

    while (pos < limit) {
        if (top) {
            w->resume_pos = pos;
            w->top_prev = prev_tag;
        }
        if (nrows(w) >= w->row_limit) FAIL(bail()); /* header_too_large */
        if (pos + 8 > buflen) FAIL(short_read(w, pos + 8));
        const uint16_t group = u16(buf + pos), elem = u16(buf + pos + 2);
        const uint32_t tag = (uint32_t)group << 16 | elem;
        uint32_t length;
        int vr = VR_NONE;
        if (explicit_vr) {
            if (group == 0xFFFE) {
                length = u32(buf + pos + 4);
                pos += 8;
            } else {
                /* Not a VR (zero padding among them): the Python walker says what it is. */
                unsigned char a = buf[pos + 4], b = buf[pos + 5];
                if (a < 'A' || a > 'Z' || b < 'A' || b > 'Z') FAIL(bail());
                vr = VR_BY_LETTERS[(a - 'A') * 26 + (b - 'A')];
                if (vr < 0) FAIL(bail());
                if (VRS[vr].long_length) {
                    if (pos + 12 > buflen) FAIL(short_read(w, pos + 12));
                    length = u32(buf + pos + 8);
                    pos += 12;
                } else {
                    length = u16(buf + pos + 6);
                    pos += 8;
                }
            }
        } else {
            length = u32(buf + pos + 4);
            if (tag == 0 && length == 0) FAIL(bail()); /* zero padding */
            pos += 8;
        }
        if (group == 0xFFFE) {
            if (tag == ITEM_DELIM && end < 0) {
                result = pos;
                goto done; /* the character set is restored below */
            }
            FAIL(bail());
        }
        if ((Py_ssize_t)tag <= prev_tag) FAIL(bail()); /* duplicate_tag, tag_order */
        prev_tag = (Py_ssize_t)tag;
        PyObject *creator = NULL; /* borrowed */
        if ((group & 1) && elem >= 0x1000) {
            creator = creator_get(creators, (uint32_t)group << 8 | elem >> 8);
            if (creator == NULL && PyErr_Occurred()) goto done;
        }
        const int encoded_un = vr == VR_UN;
        if (encoded_un && length != UNDEFINED) {
            /* An explicit UN that the dictionaries know better: read as its real VR, as pydicom does. */
            vr = vr_from_call(PyObject_CallFunction(f_known_vr_of_un, "kOk", (unsigned long)tag,
                                                    creator ? creator : Py_None, (unsigned long)length));
            if (vr < 0) goto done;
        } else if (vr == VR_NONE) {
            if (creator != NULL) {
                vr = vr_from_call(PyObject_CallFunction(f_private_vr, "Ok", creator, (unsigned long)tag));
                if (vr < 0) goto done;
            } else if ((group & 1) && elem >= 0x10 && elem <= 0xFF) {
                vr = VR_LO;
            } else {
                vr = (group & 1) ? VR_UN : public_vr(tag);
                if (vr < 0) goto done;
                if (vr == VR_US && w->pr_one) {
                    PyObject *amb = PyObject_CallFunction(f_ambiguous, "k", (unsigned long)tag);
                    if (amb == NULL) FAIL(helper_failed());
                    int truth = PyObject_IsTrue(amb);
                    Py_DECREF(amb);
                    if (truth < 0) FAIL(helper_failed());
                    if (truth) vr = VR_SS; /* 'US or SS' attributes follow PixelRepresentation */
                }
            }
        }
        if (tag >= 0x7FE00008u && top && (tag == 0x7FE00010u || tag == 0x7FE00008u || tag == 0x7FE00009u)) {
            const Value none = {V_NONE, NULL, NULL, 0, 0};
            if (append_row(w, tag, vr, &none, length == UNDEFINED ? -1 : (int64_t)length, path, NULL, -1) < 0)
                goto done;
            if (length != UNDEFINED) {
                w->pixel_offset = pos;
                w->pixel_length = length;
                w->has_pixel_length = 1;
            }
            w->stopped = 1;
            w->stop_offset = pos;
            result = pos;
            goto done;
        }
        if (length == UNDEFINED || vr == VR_SQ) {
            if (vr == VR_SQ || vr == VR_UN) {
                pos = sequence(w, pos, length, tag, path, creator, encoded_un, explicit_vr, depth);
                if (pos < 0) goto done;
                continue;
            }
            FAIL(bail());
        }
        const Py_ssize_t vend = pos + (Py_ssize_t)length;
        if (vend > limit) {
            if (end >= 0) FAIL(bail());
            FAIL(short_read(w, vend));
        }
        /* The caller's end (a file meta element's, from its own length) may lie past the bytes
         * read: the value is not all there (the Python walker slices what there is, then stops). */
        if (vend > buflen) FAIL(bail());
        const int kind = VRS[vr].kind;
        const int numeric = VRS[vr].numeric;
        /* Into the compiled columns a value goes as bytes, no str made, unless the walk itself
         * reads it: a private creator, SpecificCharacterSet, PixelRepresentation. */
        const int needs_object = !w->cmode || (elem <= 0xFF && (((group & 1) && elem >= 0x10) || tag == 0x00080005u)) ||
                                 (tag == 0x00280103u && top);
        Value direct = {V_NONE, NULL, buf + pos, (Py_ssize_t)length, numeric};
        PyObject *value = NULL; /* new reference, or NULL for None or a direct value */
        if (kind == K_PLAIN || (kind == K_CHARSET && w->default_charset)) {
            if (vr == VR_DS || vr == VR_IS) {
                for (uint32_t i = 0; i < length; i++)
                    if (buf[pos + i] & 0x80) FAIL(bail()); /* not ASCII: invalid_value caveat */
            }
            if (!needs_object) {
                direct.kind = V_LATIN1;
            } else if ((value = latin1_stripped(buf + pos, length)) == NULL) {
                goto done;
            }
        } else if (kind == K_BINARY) {
            value = NULL;
        } else if (numeric != N_NONE) {
            /* wrong length: reported by the Python walker */
            if (length % NUMERIC_SIZES[numeric]) FAIL(bail());
            if (!needs_object) {
                direct.kind = V_NUMBERS;
            } else if ((value = numbers_text(buf + pos, length, numeric)) == NULL) {
                goto done;
            }
        } else {
            /* Text in a character set other than the default repertoire: the Python decoder. */
            value = PyObject_CallMethod(w->walker, "_text", "y#O", (const char *)(buf + pos),
                                        (Py_ssize_t)length, VR_STR[vr]);
            if (value == NULL) FAIL(helper_failed());
        }
        if (elem <= 0xFF && value != NULL) {
            int rc = 0;
            if ((group & 1) && elem >= 0x10) {
                rc = creator_set(w, creators, (uint32_t)group << 8 | elem, value);
            } else if (tag == 0x00080005u) {
                if (!top && saved == NULL) {
                    /* An item's own character set holds for that item only: keep the current one. */
                    saved = w->charset;
                    Py_INCREF(saved);
                }
                rc = call_set_charset(w, value);
            }
            if (rc < 0) {
                Py_DECREF(value);
                goto done;
            }
        } else if (tag == 0x00280103u && top && value != NULL && PyUnicode_GET_LENGTH(value) > 0) {
            if (pixel_representation(w, value) < 0) {
                Py_DECREF(value);
                goto done;
            }
        }
        if (value != NULL) {
            direct.kind = V_OBJECT;
            direct.object = value;
        }
        int rc = append_row(w, tag, vr, &direct, (int64_t)length, path, creator, -1);
        Py_XDECREF(value);
        if (rc < 0) goto done;
        pos = vend;
    }
    if (top) w->top_prev = prev_tag; /* the walk may go on from here with more bytes */
    if (end < 0 && !top) FAIL(short_read(w, buflen + 1)); /* an item ran out before its delimiter */
    if (end >= 0 && pos != end) FAIL(bail());
    result = pos;
done:
    if (saved != NULL) {
        if (result >= 0 && set_charset(w, saved) < 0) result = helper_failed();
        Py_DECREF(saved);
    }
    creators_clear(creators);
    PyMem_Free(creators);
    return result;
#undef FAIL
}

/* ---- module functions ---------------------------------------------------------------------- */

/* walker.out's columns: seven lists, or the compiled columns (tag, value_length and n_items
 * IntColumn, the others StrColumn). Sets w->cmode; -1 with TypeError for anything else. */
static int get_columns(W *w, PyObject *out) {
    PyObject *const names[7] = {s_tag, s_vr, s_value, s_value_length, s_seq_path, s_private_creator, s_n_items};
    PyObject **slots[7] = {&w->l_tag, &w->l_vr, &w->l_val, &w->l_len, &w->l_path, &w->l_cre, &w->l_items};
    static const int is_int[7] = {1, 0, 0, 1, 0, 0, 1};
    int lists = 0, columns = 0;
    for (int i = 0; i < 7; i++) {
        PyObject *col = PyObject_GetAttr(out, names[i]);
        if (col == NULL) return -1;
        *slots[i] = col;
        lists += PyList_CheckExact(col);
        columns += Py_IS_TYPE(col, is_int[i] ? &IntColumnType : &StrColumnType);
    }
    if (lists != 7 && columns != 7) {
        PyErr_SetString(PyExc_TypeError, "element columns must be seven lists or the compiled columns");
        return -1;
    }
    w->cmode = columns == 7;
    if (w->cmode) {
        w->c_tag = (IntColumn *)w->l_tag;
        w->c_vr = (StrColumn *)w->l_vr;
        w->c_val = (StrColumn *)w->l_val;
        w->c_len = (IntColumn *)w->l_len;
        w->c_path = (StrColumn *)w->l_path;
        w->c_cre = (StrColumn *)w->l_cre;
        w->c_items = (IntColumn *)w->l_items;
    }
    return 0;
}

static int set_int_attr(PyObject *obj, PyObject *name, Py_ssize_t v) {
    PyObject *n = PyLong_FromSsize_t(v);
    if (n == NULL) return -1;
    int rc = PyObject_SetAttr(obj, name, n);
    Py_DECREF(n);
    return rc;
}

/* An int attribute of the walker as a C number. */
static int get_ssize_attr(PyObject *obj, PyObject *name, Py_ssize_t *out) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) return -1;
    *out = PyLong_AsSsize_t(v);
    Py_DECREF(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

PyDoc_STRVAR(walk_doc,
             "walk(walker, pos, end, path, top, explicit) -> int\n\n"
             "_Walker.walk(pos, end, path, top) with the walker's encoding `explicit`, compiled.\n"
             "Raises Fallback where the Python walker must read the bytes instead.");

static PyObject *py_walk(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "walk() takes 6 arguments");
        return NULL;
    }
    if (NeedMore == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "walker not configured");
        return NULL;
    }
    W w;
    memset(&w, 0, sizeof w);
    w.walker = args[0];
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t end = -1;
    if (args[2] != Py_None) {
        end = PyLong_AsSsize_t(args[2]);
        if (end == -1 && PyErr_Occurred()) return NULL;
        if (end < 0) end = -2; /* not an offset the Python walk produces: let it decide */
    }
    PyObject *path = args[3];
    if (!PyUnicode_Check(path)) {
        PyErr_SetString(PyExc_TypeError, "path must be str");
        return NULL;
    }
    int top = PyObject_IsTrue(args[4]);
    int explicit_vr = PyObject_IsTrue(args[5]);
    if (top < 0 || explicit_vr < 0) return NULL;
    if (pos < 0 || end == -2) {
        PyErr_SetNone(Fallback);
        return NULL;
    }

    PyObject *bufobj = NULL, *out = NULL, *ret = NULL, *flag = NULL, *pr = NULL;
    Py_ssize_t value;
    bufobj = PyObject_GetAttr(w.walker, s_buf);
    if (bufobj == NULL) goto done;
    if (!PyBytes_CheckExact(bufobj)) {
        PyErr_SetNone(Fallback);
        goto done;
    }
    w.buf = (const unsigned char *)PyBytes_AS_STRING(bufobj);
    w.buflen = PyBytes_GET_SIZE(bufobj);
    flag = PyObject_GetAttr(w.walker, s_complete);
    if (flag == NULL || (w.complete = PyObject_IsTrue(flag)) < 0) goto done;
    pr = PyObject_GetAttr(w.walker, s_pixel_representation);
    if (pr == NULL || (w.pr_one = PyObject_RichCompareBool(pr, ONE, Py_EQ)) < 0) goto done;
    if (get_ssize_attr(w.walker, s_row_limit, &w.row_limit) < 0) goto done;
    if (get_ssize_attr(w.walker, s_max_depth, &value) < 0) goto done;
    w.max_depth = (long)(value > MAX_DEPTH ? MAX_DEPTH + 1 : value);
    if (get_ssize_attr(w.walker, s_depth, &value) < 0) goto done;
    w.depth0 = (long)(value > MAX_DEPTH ? MAX_DEPTH + 1 : value);
    w.top_creators = PyObject_GetAttr(w.walker, s_top_creators);
    if (w.top_creators == NULL) goto done;
    w.caveats = PyObject_GetAttr(w.walker, s_caveats);
    if (w.caveats == NULL) goto done;
    if (!PyDict_CheckExact(w.top_creators) || !PyList_CheckExact(w.caveats)) {
        PyErr_SetNone(Fallback);
        goto done;
    }
    w.n_caveats0 = PyList_GET_SIZE(w.caveats);
    if ((w.charset0 = get_charset(&w)) == NULL || note_charset(&w, w.charset0) < 0) goto done;
    out = PyObject_GetAttr(w.walker, s_out);
    if (out == NULL) goto done;
    if (get_columns(&w, out) < 0) goto done;

    w.resume_pos = pos;
    if (get_ssize_attr(w.walker, s_top_prev_tag, &w.top_prev) < 0) goto done;
    Py_ssize_t result = walk(&w, pos, end, path, top, explicit_vr, 0);
    if (result < 0) {
        if (PyErr_ExceptionMatches(Fallback)) {
            restore(&w);
        } else if (top && PyErr_ExceptionMatches(NeedMore)) {
            /* The rows of whole top-level elements stay; the walk goes on from resume_pos. */
            PyObject *et, *ev, *tb;
            PyErr_Fetch(&et, &ev, &tb);
            if (set_int_attr(w.walker, s_resume_pos, w.resume_pos) < 0 ||
                set_int_attr(w.walker, s_top_prev_tag, w.top_prev) < 0 ||
                (w.pr_new != NULL && PyObject_SetAttr(w.walker, s_pixel_representation, w.pr_new) < 0)) {
                Py_XDECREF(et);
                Py_XDECREF(ev);
                Py_XDECREF(tb);
            } else {
                PyErr_Restore(et, ev, tb);
            }
        }
        goto done;
    }
    if (top && (set_int_attr(w.walker, s_resume_pos, w.resume_pos) < 0 ||
                set_int_attr(w.walker, s_top_prev_tag, w.top_prev) < 0))
        goto done;
    if (w.pr_new != NULL && PyObject_SetAttr(w.walker, s_pixel_representation, w.pr_new) < 0) goto done;
    if (w.stopped) {
        if (set_int_attr(w.walker, s_stop_offset, w.stop_offset) < 0) goto done;
        if (w.has_pixel_length && (set_int_attr(w.walker, s_pixel_offset, w.pixel_offset) < 0 ||
                                   set_int_attr(w.walker, s_pixel_length, w.pixel_length) < 0))
            goto done;
    }
    ret = PyLong_FromSsize_t(result);
done:
    Py_XDECREF(w.charset);
    Py_XDECREF(w.charset0);
    Py_XDECREF(w.caveats);
    Py_XDECREF(w.top_creators);
    Py_XDECREF(w.top_creators0);
    Py_XDECREF(w.pr_new);
    Py_XDECREF(w.l_tag);
    Py_XDECREF(w.l_vr);
    Py_XDECREF(w.l_val);
    Py_XDECREF(w.l_len);
    Py_XDECREF(w.l_path);
    Py_XDECREF(w.l_cre);
    Py_XDECREF(w.l_items);
    Py_XDECREF(out);
    Py_XDECREF(pr);
    Py_XDECREF(flag);
    Py_XDECREF(bufobj);
    return ret;
}

PyDoc_STRVAR(pick_doc,
             "pick(paths, tags, values, start, end, index, n) -> list\n\n"
             "The values of rows start..end whose (path, tag) is a key of ``index`` (a dict: tag ->\n"
             "tuple (path0, column0, path1, column1, ...)), at their columns of a list of n (None\n"
             "elsewhere); the last row of a key wins, as in a dict built from the rows.");

static PyObject *py_pick(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "pick() takes 7 arguments");
        return NULL;
    }
    PyObject *paths = args[0], *tags = args[1], *values = args[2], *index = args[5];
    if (!PyList_CheckExact(paths) || !PyList_CheckExact(tags) || !PyList_CheckExact(values) ||
        !PyDict_CheckExact(index)) {
        PyErr_SetString(PyExc_TypeError, "pick() needs three lists and a dict");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[3]), end = PyLong_AsSsize_t(args[4]);
    Py_ssize_t n = PyLong_AsSsize_t(args[6]);
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t rows = PyList_GET_SIZE(tags);
    if (PyList_GET_SIZE(paths) < rows) rows = PyList_GET_SIZE(paths);
    if (PyList_GET_SIZE(values) < rows) rows = PyList_GET_SIZE(values);
    if (start < 0 || end > rows || start > end || n < 0) {
        PyErr_SetString(PyExc_IndexError, "pick(): rows out of range");
        return NULL;
    }
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(Py_None);
        PyList_SET_ITEM(out, i, Py_None);
    }
    for (Py_ssize_t i = start; i < end; i++) {
        PyObject *keys = PyDict_GetItemWithError(index, PyList_GET_ITEM(tags, i));
        if (keys == NULL) {
            if (PyErr_Occurred()) goto fail;
            continue;
        }
        if (!PyTuple_CheckExact(keys)) {
            PyErr_SetString(PyExc_TypeError, "pick(): index values must be tuples");
            goto fail;
        }
        PyObject *path = PyList_GET_ITEM(paths, i);
        for (Py_ssize_t k = 0; k + 1 < PyTuple_GET_SIZE(keys); k += 2) {
            int same = PyObject_RichCompareBool(path, PyTuple_GET_ITEM(keys, k), Py_EQ);
            if (same < 0) goto fail;
            if (!same) continue;
            Py_ssize_t column = PyLong_AsSsize_t(PyTuple_GET_ITEM(keys, k + 1));
            if (column == -1 && PyErr_Occurred()) goto fail;
            if (column < 0 || column >= n) {
                PyErr_SetString(PyExc_IndexError, "pick(): column out of range");
                goto fail;
            }
            PyObject *value = PyList_GET_ITEM(values, i);
            Py_INCREF(value);
            PyList_SetItem(out, column, value); /* steals value, drops the previous one */
        }
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}


PyDoc_STRVAR(pick_columns_doc,
             "pick_columns(paths, tags, values, start, end, keys, entries, n) -> list\n\n"
             "pick() over the compiled columns (paths and values StrColumn, tags IntColumn): ``keys``\n"
             "is a hash table of the distinct tags (see compiled.picker): 2**b slots of (uint32 tag,\n"
             "int32 k), k = -1 for an empty slot, a tag at slot (tag * 2654435761 mod 2**32) >> (32 - b)\n"
             "or the next free one; ``entries[k]`` is the tuple (path0, column0, path1, column1, ...)\n"
             "of that tag.");

static PyObject *py_pick_columns(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "pick_columns() takes 8 arguments");
        return NULL;
    }
    if (!Py_IS_TYPE(args[0], &StrColumnType) || !Py_IS_TYPE(args[1], &IntColumnType) ||
        !Py_IS_TYPE(args[2], &StrColumnType) || !PyBytes_CheckExact(args[5]) || !PyTuple_CheckExact(args[6])) {
        PyErr_SetString(PyExc_TypeError, "pick_columns() needs StrColumn, IntColumn, StrColumn, bytes, tuple");
        return NULL;
    }
    StrColumn *paths = (StrColumn *)args[0], *values = (StrColumn *)args[2];
    IntColumn *tags = (IntColumn *)args[1];
    PyObject *entries = args[6];
    /* A table of 2**bits slots, 2 <= bits <= 24. */
    Py_ssize_t slots = PyBytes_GET_SIZE(args[5]) / 8, m = PyTuple_GET_SIZE(entries);
    int bits = 1;
    while (bits <= 24 && ((Py_ssize_t)1 << bits) < slots) bits++;
    if (PyBytes_GET_SIZE(args[5]) % 8 || ((Py_ssize_t)1 << bits) != slots || bits > 24) {
        PyErr_SetString(PyExc_ValueError, "pick_columns(): keys is not a table of 2**b slots");
        return NULL;
    }
    const unsigned char *keys = (const unsigned char *)PyBytes_AS_STRING(args[5]);
    Py_ssize_t start = PyLong_AsSsize_t(args[3]), end = PyLong_AsSsize_t(args[4]);
    Py_ssize_t n = PyLong_AsSsize_t(args[7]);
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t rows = tags->n;
    if (paths->n < rows) rows = paths->n;
    if (values->n < rows) rows = values->n;
    if (start < 0 || end > rows || start > end || n < 0) {
        PyErr_SetString(PyExc_IndexError, "pick_columns(): rows out of range");
        return NULL;
    }
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(Py_None);
        PyList_SET_ITEM(out, i, Py_None);
    }
    for (Py_ssize_t i = start; i < end; i++) {
        if (!is_valid(tags->valid, i) || !is_valid(paths->valid, i)) continue;
        int64_t tag = tags->values[i];
        if (tag < 0 || tag > UINT32_MAX) continue;
        /* Most rows are no key: a hash probe (mostly one empty slot) tells, where a binary
         * search's mispredicted branches cost more than the rest of the pick. */
        Py_ssize_t slot = (Py_ssize_t)(((uint32_t)tag * 2654435761u) >> (32 - bits)), k = -1;
        for (Py_ssize_t probe = 0; probe < slots; probe++, slot = (slot + 1) & (slots - 1)) {
            int32_t at = (int32_t)u32(keys + slot * 8 + 4);
            if (at < 0) break;
            if (u32(keys + slot * 8) == (uint32_t)tag) {
                k = at;
                break;
            }
        }
        if (k < 0) continue;
        if (k >= m) {
            PyErr_SetString(PyExc_IndexError, "pick_columns(): entry out of range");
            goto fail;
        }
        PyObject *pairs = PyTuple_GET_ITEM(entries, k);
        if (!PyTuple_CheckExact(pairs)) {
            PyErr_SetString(PyExc_TypeError, "pick_columns(): entries must be tuples");
            goto fail;
        }
        Py_ssize_t path_len = (Py_ssize_t)(paths->offsets[i + 1] - paths->offsets[i]);
        const char *path = path_len ? paths->data.data + paths->offsets[i] : "";
        for (Py_ssize_t k = 0; k + 1 < PyTuple_GET_SIZE(pairs); k += 2) {
            PyObject *want = PyTuple_GET_ITEM(pairs, k);
            if (!PyUnicode_Check(want)) {
                PyErr_SetString(PyExc_TypeError, "pick_columns(): paths must be str");
                goto fail;
            }
            Py_ssize_t want_len;
            const char *want_utf8 = PyUnicode_AsUTF8AndSize(want, &want_len);
            if (want_utf8 == NULL) goto fail;
            if (want_len != path_len || (path_len && memcmp(want_utf8, path, (size_t)path_len))) continue;
            Py_ssize_t column = PyLong_AsSsize_t(PyTuple_GET_ITEM(pairs, k + 1));
            if (column == -1 && PyErr_Occurred()) goto fail;
            if (column < 0 || column >= n) {
                PyErr_SetString(PyExc_IndexError, "pick_columns(): column out of range");
                goto fail;
            }
            PyObject *value = str_get(values, i);
            if (value == NULL) goto fail;
            PyList_SetItem(out, column, value); /* steals value, drops the previous one */
        }
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* ---- Arrow buffers ------------------------------------------------------------------------- */

/* A validity bitmap for ``n`` rows, all valid (to be cleared where None), as a new bytes object. */
static PyObject *new_validity(Py_ssize_t n) {
    PyObject *bits = PyBytes_FromStringAndSize(NULL, (n + 7) / 8);
    if (bits != NULL) memset(PyBytes_AS_STRING(bits), 0xFF, (size_t)((n + 7) / 8));
    return bits;
}

PyDoc_STRVAR(arrow_strings_doc,
             "arrow_strings(values) -> (validity, offsets, data, null_count)\n\n"
             "The buffers of an Arrow string array of a list of str and None (validity is None when\n"
             "nothing is None): what pyarrow.array(values, pyarrow.string()) builds, in one pass.");

static PyObject *py_arrow_strings(PyObject *self, PyObject *values) {
    if (!PyList_CheckExact(values)) {
        PyErr_SetString(PyExc_TypeError, "arrow_strings() needs a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    /* First pass: total bytes, nulls (the UTF-8 of each str is cached on it by the first call). */
    Py_ssize_t total = 0, nulls = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        if (v == Py_None) {
            nulls++;
            continue;
        }
        if (!PyUnicode_Check(v)) {
            PyErr_Format(PyExc_TypeError, "arrow_strings(): row %zd is not str", i);
            return NULL;
        }
        Py_ssize_t size;
        if (PyUnicode_AsUTF8AndSize(v, &size) == NULL) return NULL;
        total += size;
        if (total > INT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "arrow_strings(): more than 2 GB of text");
            return NULL;
        }
    }
    PyObject *validity = NULL, *offsets = NULL, *data = NULL;
    if (nulls && (validity = new_validity(n)) == NULL) goto fail;
    if ((offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * 4)) == NULL) goto fail;
    if ((data = PyBytes_FromStringAndSize(NULL, total)) == NULL) goto fail;
    int32_t *off = (int32_t *)PyBytes_AS_STRING(offsets);
    char *out = PyBytes_AS_STRING(data);
    unsigned char *bits = validity ? (unsigned char *)PyBytes_AS_STRING(validity) : NULL;
    Py_ssize_t at = 0;
    off[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        if (v != Py_None) {
            Py_ssize_t size;
            const char *utf8 = PyUnicode_AsUTF8AndSize(v, &size);
            if (utf8 == NULL) goto fail;
            if (at + size > total) { /* the list changed under us */
                PyErr_SetString(PyExc_RuntimeError, "arrow_strings(): the list changed");
                goto fail;
            }
            memcpy(out + at, utf8, (size_t)size);
            at += size;
        } else {
            bits[i >> 3] &= (unsigned char)~(1u << (i & 7));
        }
        off[i + 1] = (int32_t)at;
    }
    PyObject *result = Py_BuildValue("(OOOn)", validity ? validity : Py_None, offsets, data, nulls);
    Py_XDECREF(validity);
    Py_DECREF(offsets);
    Py_DECREF(data);
    return result;
fail:
    Py_XDECREF(validity);
    Py_XDECREF(offsets);
    Py_XDECREF(data);
    return NULL;
}

PyDoc_STRVAR(arrow_ints_doc,
             "arrow_ints(values, width) -> (validity, data, null_count)\n\n"
             "The buffers of an Arrow int32 (width 4) or int64 (width 8) array of a list of int\n"
             "and None (validity is None when nothing is None).");

static PyObject *py_arrow_ints(PyObject *self, PyObject *args) {
    PyObject *values;
    int width;
    if (!PyArg_ParseTuple(args, "O!i", &PyList_Type, &values, &width)) return NULL;
    if (width != 4 && width != 8) {
        PyErr_SetString(PyExc_ValueError, "arrow_ints(): width must be 4 or 8");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values), nulls = 0;
    for (Py_ssize_t i = 0; i < n; i++) nulls += PyList_GET_ITEM(values, i) == Py_None;
    PyObject *validity = NULL, *data = PyBytes_FromStringAndSize(NULL, n * width);
    if (data == NULL) return NULL;
    if (nulls && (validity = new_validity(n)) == NULL) goto fail;
    unsigned char *bits = validity ? (unsigned char *)PyBytes_AS_STRING(validity) : NULL;
    char *out = PyBytes_AS_STRING(data);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        long long x = 0;
        if (v == Py_None) {
            bits[i >> 3] &= (unsigned char)~(1u << (i & 7));
        } else {
            x = PyLong_AsLongLong(v);
            if (x == -1 && PyErr_Occurred()) goto fail;
            if (width == 4 && (x > INT32_MAX || x < INT32_MIN)) {
                PyErr_SetString(PyExc_OverflowError, "arrow_ints(): value out of int32 range");
                goto fail;
            }
        }
        if (width == 4) {
            int32_t y = (int32_t)x;
            memcpy(out + i * 4, &y, 4);
        } else {
            int64_t y = (int64_t)x;
            memcpy(out + i * 8, &y, 8);
        }
    }
    PyObject *result = Py_BuildValue("(OOn)", validity ? validity : Py_None, data, nulls);
    Py_XDECREF(validity);
    Py_DECREF(data);
    return result;
fail:
    Py_XDECREF(validity);
    Py_DECREF(data);
    return NULL;
}

PyDoc_STRVAR(configure_doc,
             "configure(need_more, public_vr, private_vr, known_vr_of_un, ambiguous)\n\n"
             "Hand over the reader's _NeedMore class and its VR helpers.");

static PyObject *py_configure(PyObject *self, PyObject *args) {
    PyObject *nm, *pub, *priv, *un, *amb;
    if (!PyArg_ParseTuple(args, "OOOOO", &nm, &pub, &priv, &un, &amb)) return NULL;
    Py_INCREF(nm);
    Py_XSETREF(NeedMore, nm);
    Py_INCREF(pub);
    Py_XSETREF(f_public_vr, pub);
    Py_INCREF(priv);
    Py_XSETREF(f_private_vr, priv);
    Py_INCREF(un);
    Py_XSETREF(f_known_vr_of_un, un);
    Py_INCREF(amb);
    Py_XSETREF(f_ambiguous, amb);
    memset(pub_vr, 0, sizeof pub_vr);
    pub_used = 0;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"walk", (PyCFunction)(void (*)(void))py_walk, METH_FASTCALL, walk_doc},
    {"configure", py_configure, METH_VARARGS, configure_doc},
    {"pick", (PyCFunction)(void (*)(void))py_pick, METH_FASTCALL, pick_doc},
    {"pick_columns", (PyCFunction)(void (*)(void))py_pick_columns, METH_FASTCALL, pick_columns_doc},
    {"arrow_strings", py_arrow_strings, METH_O, arrow_strings_doc},
    {"arrow_ints", py_arrow_ints, METH_VARARGS, arrow_ints_doc},
    {NULL, NULL, 0, NULL},
};

static int intern(PyObject **slot, const char *s) {
    *slot = PyUnicode_InternFromString(s);
    return *slot == NULL ? -1 : 0;
}

static int module_exec(PyObject *m) {
    memset(VR_BY_LETTERS, -1, sizeof VR_BY_LETTERS);
    VR_BY_NAME = PyDict_New();
    if (VR_BY_NAME == NULL) return -1;
    for (int i = 0; i < N_VRS; i++) {
        const char *name = VRS[i].name;
        VR_BY_LETTERS[(name[0] - 'A') * 26 + (name[1] - 'A')] = (signed char)i;
        if (intern(&VR_STR[i], name) < 0) return -1;
        PyObject *idx = PyLong_FromLong(i);
        if (idx == NULL || PyDict_SetItem(VR_BY_NAME, VR_STR[i], idx) < 0) return -1;
        Py_DECREF(idx);
        if (!strcmp(name, "DS")) VR_DS = i;
        if (!strcmp(name, "IS")) VR_IS = i;
        if (!strcmp(name, "LO")) VR_LO = i;
        if (!strcmp(name, "SQ")) VR_SQ = i;
        if (!strcmp(name, "SS")) VR_SS = i;
        if (!strcmp(name, "UN")) VR_UN = i;
        if (!strcmp(name, "US")) VR_US = i;
    }
    if (intern(&s_buf, "buf") || intern(&s_complete, "complete") || intern(&s_out, "out") ||
        intern(&s_tag, "tag") || intern(&s_vr, "vr") || intern(&s_value, "value") ||
        intern(&s_value_length, "value_length") || intern(&s_seq_path, "seq_path") ||
        intern(&s_private_creator, "private_creator") || intern(&s_n_items, "n_items") ||
        intern(&s_default_charset, "default_charset") ||
        intern(&s_pixel_representation, "pixel_representation") ||
        intern(&s_stop_offset, "stop_offset") || intern(&s_pixel_offset, "pixel_offset") ||
        intern(&s_pixel_length, "pixel_length") || intern(&s_caveats, "caveats") ||
        intern(&s_encodings, "encodings") || intern(&s_codec, "codec") ||
        intern(&s_simple_charset, "simple_charset") || intern(&s_set_charset, "_set_charset") ||
        intern(&s_text, "_text") || intern(&s_isdigit, "isdigit") ||
        intern(&s_row_limit, "row_limit") || intern(&s_max_depth, "max_depth") ||
        intern(&s_depth, "depth") || intern(&s_top_creators, "top_creators") ||
        intern(&s_resume_pos, "resume_pos") || intern(&s_top_prev_tag, "top_prev_tag"))
        return -1;
    ONE = PyLong_FromLong(1);
    if (ONE == NULL) return -1;
    Fallback = PyErr_NewExceptionWithDoc(
        "curation.crawler._walker.Fallback",
        "The compiled walker leaves these bytes to the Python walker (an error or a rare path).",
        NULL, NULL);
    if (Fallback == NULL) return -1;
    Py_INCREF(Fallback);
    if (PyModule_AddObject(m, "Fallback", Fallback) < 0) {
        Py_DECREF(Fallback);
        return -1;
    }
    if (PyModule_AddIntConstant(m, "MAX_DEPTH", MAX_DEPTH) < 0) return -1;
    if (PyType_Ready(&StrColumnType) < 0 || PyType_Ready(&IntColumnType) < 0) return -1;
    Py_INCREF(&StrColumnType);
    if (PyModule_AddObject(m, "StrColumn", (PyObject *)&StrColumnType) < 0) {
        Py_DECREF(&StrColumnType);
        return -1;
    }
    Py_INCREF(&IntColumnType);
    if (PyModule_AddObject(m, "IntColumn", (PyObject *)&IntColumnType) < 0) {
        Py_DECREF(&IntColumnType);
        return -1;
    }
    return 0;
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_walker",
    "The compiled header walker of curation.crawler.reader (see curation/crawler/compiled.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__walker(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (module_exec(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
