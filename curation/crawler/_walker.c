/*
 * The compiled header walker: the hot loop of curation/crawler/reader.py (_Walker.walk and
 * _Walker._sequence) in C, through the CPython C API.
 *
 * Contract (see curation/crawler/compiled.py, which is the only caller):
 *
 * - walk(walker, pos, end, path, top) reads the same elements as _Walker.walk(pos, end, path, top)
 *   and appends the same rows to walker.out's lists; on success it returns the same offset and
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
 * Memory safety: every read of the buffer is preceded by a bounds check against buflen (the
 * length of the bytes object, which the walk holds a reference to); positions are 64-bit and a
 * length is at most 0xFFFFFFFF, so pos + length cannot overflow; recursion is bounded by
 * MAX_DEPTH (deeper nesting falls back to Python, which has its own limit).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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

/* ---- one walk ------------------------------------------------------------------------------ */

typedef struct {
    PyObject *walker;
    const unsigned char *buf;
    Py_ssize_t buflen;
    int complete;
    PyObject *l_tag, *l_vr, *l_val, *l_len, *l_path, *l_cre, *l_items;
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

static int truncate_rows(W *w, Py_ssize_t row) {
    PyObject *lists[7] = {w->l_tag, w->l_vr, w->l_val, w->l_len, w->l_path, w->l_cre, w->l_items};
    for (int i = 0; i < 7; i++) {
        Py_ssize_t have = PyList_GET_SIZE(lists[i]);
        if (have > row && PyList_SetSlice(lists[i], row, have, NULL) < 0) return -1;
    }
    return 0;
}


/* Append one row; value, length and n_items are new references (or NULL for None) and stolen. */
static int append_row(W *w, uint32_t tag, int vr, PyObject *value, PyObject *length, PyObject *path,
                      PyObject *creator, PyObject *n_items) {
    int rc = -1;
    PyObject *t = tag_int(tag);
    if (t == NULL) goto done;
    if (PyList_Append(w->l_tag, t) < 0) goto done;
    if (PyList_Append(w->l_vr, VR_STR[vr]) < 0) goto done;
    if (PyList_Append(w->l_val, value ? value : Py_None) < 0) goto done;
    if (PyList_Append(w->l_len, length ? length : Py_None) < 0) goto done;
    if (PyList_Append(w->l_path, path) < 0) goto done;
    if (PyList_Append(w->l_cre, creator ? creator : Py_None) < 0) goto done;
    if (PyList_Append(w->l_items, n_items ? n_items : Py_None) < 0) goto done;
    rc = 0;
done:
    Py_XDECREF(t);
    Py_XDECREF(value);
    Py_XDECREF(length);
    Py_XDECREF(n_items);
    return rc;
}

/* ---- values -------------------------------------------------------------------------------- */

/* bytes.decode("latin-1").rstrip("\x00 "): latin-1 maps bytes to code points one to one. */
static PyObject *latin1_stripped(const unsigned char *p, Py_ssize_t n) {
    while (n > 0 && (p[n - 1] == 0 || p[n - 1] == ' ')) n--;
    return PyUnicode_DecodeLatin1((const char *)p, n, NULL);
}

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Text;

static int text_reserve(Text *t, Py_ssize_t more) {
    if (t->len + more <= t->cap) return 0;
    Py_ssize_t cap = t->cap ? t->cap : 64;
    while (cap < t->len + more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *data = PyMem_Realloc(t->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->data = data;
    t->cap = cap;
    return 0;
}

static int text_add(Text *t, const char *s, Py_ssize_t n) {
    if (text_reserve(t, n) < 0) return -1;
    memcpy(t->data + t->len, s, (size_t)n);
    t->len += n;
    return 0;
}

/* str() of each binary number, joined by a backslash: reader._Walker._numbers and AT values. */
static PyObject *numbers_text(const unsigned char *p, Py_ssize_t n, int numeric) {
    static const int sizes[] = {0, 2, 2, 4, 4, 4, 8, 8, 8, 4};
    int size = sizes[numeric];
    if (n % size) return NULL; /* wrong length: the Python walker reports it */
    Py_ssize_t count = n / size;
    Text t = {NULL, 0, 0};
    char one[40];
    for (Py_ssize_t i = 0; i < count; i++) {
        const unsigned char *q = p + i * size;
        int k = 0;
        char *dyn = NULL;
        switch (numeric) {
        case N_US: k = snprintf(one, sizeof one, "%u", (unsigned)u16(q)); break;
        case N_SS: k = snprintf(one, sizeof one, "%d", (int)(int16_t)u16(q)); break;
        case N_UL: k = snprintf(one, sizeof one, "%lu", (unsigned long)u32(q)); break;
        case N_SL: k = snprintf(one, sizeof one, "%ld", (long)(int32_t)u32(q)); break;
        case N_SV:
        case N_UV: {
            uint64_t v = (uint64_t)u32(q) | ((uint64_t)u32(q + 4) << 32);
            if (numeric == N_SV)
                k = snprintf(one, sizeof one, "%lld", (long long)(int64_t)v);
            else
                k = snprintf(one, sizeof one, "%llu", (unsigned long long)v);
            break;
        }
        case N_FL:
        case N_FD: {
            double d;
            if (numeric == N_FL) {
                uint32_t bits = u32(q);
                float f;
                memcpy(&f, &bits, 4);
                d = (double)f;
            } else {
                uint64_t bits = (uint64_t)u32(q) | ((uint64_t)u32(q + 4) << 32);
                memcpy(&d, &bits, 8);
            }
            /* What float.__repr__ (and so str) calls. */
            dyn = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
            if (dyn == NULL) {
                PyMem_Free(t.data);
                return NULL;
            }
            break;
        }
        case N_AT:
            k = snprintf(one, sizeof one, "%04X%04X", (unsigned)u16(q), (unsigned)u16(q + 2));
            break;
        }
        int rc = 0;
        if (i > 0) rc = text_add(&t, "\\", 1);
        if (rc == 0) rc = dyn ? text_add(&t, dyn, (Py_ssize_t)strlen(dyn)) : text_add(&t, one, k);
        if (dyn) PyMem_Free(dyn);
        if (rc < 0) {
            PyMem_Free(t.data);
            return NULL;
        }
    }
    PyObject *s = PyUnicode_DecodeASCII(t.data ? t.data : "", t.len, NULL);
    PyMem_Free(t.data);
    return s;
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
    Py_ssize_t row = PyList_GET_SIZE(w->l_tag);
    Py_ssize_t n_caveats = PyList_GET_SIZE(w->caveats);
    PyObject *charset = w->charset; /* the character set before the sequence */
    Py_INCREF(charset);
    PyObject *prefix = NULL;
    Py_ssize_t result = -1;
    long n = 0;
    PyObject *vlen = NULL;
    if (length != UNDEFINED && (vlen = length_int(length)) == NULL) goto done;
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL) {
        Py_XDECREF(vlen);
        goto done;
    }
    if (append_row(w, tag, VR_SQ, NULL, vlen, path, creator, zero) < 0) goto done;
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
        if (itag != ITEM || PyList_GET_SIZE(w->l_tag) + n >= w->row_limit) {
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
    {
        PyObject *count = PyLong_FromLong(n);
        if (count == NULL) goto done;
        if (PyList_SetItem(w->l_items, row, count) < 0) goto done; /* steals count */
    }
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
        if (PyList_GET_SIZE(w->l_tag) >= w->row_limit) FAIL(bail()); /* header_too_large */
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
            PyObject *vlen = NULL;
            if (length != UNDEFINED && (vlen = length_int(length)) == NULL) goto done;
            if (append_row(w, tag, vr, NULL, vlen, path, NULL, NULL) < 0) goto done;
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
        PyObject *value = NULL; /* new reference, or NULL for None */
        if (kind == K_PLAIN || (kind == K_CHARSET && w->default_charset)) {
            if (vr == VR_DS || vr == VR_IS) {
                for (uint32_t i = 0; i < length; i++)
                    if (buf[pos + i] & 0x80) FAIL(bail()); /* not ASCII: invalid_value caveat */
            }
            value = latin1_stripped(buf + pos, length);
            if (value == NULL) goto done;
        } else if (kind == K_BINARY) {
            value = NULL;
        } else if (VRS[vr].numeric != N_NONE) {
            value = numbers_text(buf + pos, length, VRS[vr].numeric);
            if (value == NULL) {
                if (!PyErr_Occurred()) bail(); /* wrong length: reported by the Python walker */
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
        PyObject *vlen = length_int(length);
        if (vlen == NULL) {
            Py_XDECREF(value);
            goto done;
        }
        if (append_row(w, tag, vr, value, vlen, path, creator, NULL) < 0) goto done;
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

static PyObject *get_list(PyObject *out, PyObject *name) {
    PyObject *l = PyObject_GetAttr(out, name);
    if (l != NULL && !PyList_CheckExact(l)) {
        Py_DECREF(l);
        PyErr_SetString(PyExc_TypeError, "element columns must be lists");
        return NULL;
    }
    return l;
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
    if ((w.l_tag = get_list(out, s_tag)) == NULL || (w.l_vr = get_list(out, s_vr)) == NULL ||
        (w.l_val = get_list(out, s_value)) == NULL || (w.l_len = get_list(out, s_value_length)) == NULL ||
        (w.l_path = get_list(out, s_seq_path)) == NULL || (w.l_cre = get_list(out, s_private_creator)) == NULL ||
        (w.l_items = get_list(out, s_n_items)) == NULL)
        goto done;

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
