/*
 * A reversible reordering of PostgreSQL heap pages that makes them compress better.
 *
 * split(data, skip) moves the user data of every tuple (the bytes from ``skip`` bytes past
 * its t_hoff to its end) to a second stream, after the rest of the pages (page headers,
 * line pointers, tuple headers and the first ``skip`` bytes of each tuple's data, free
 * space). Tuple headers and leading fixed-width columns (ids, counters) then sit next to
 * one another, as do the tuples' variable data: zstd finds their repeats and codes each
 * kind of literal with its own statistics. join(data) undoes it exactly.
 *
 * Layout of the output: skip u8, length of the first stream u32 (little-endian), the first
 * stream, the second. Pages are BLCKSZ (8192) bytes from the start of the data; a page is
 * split only when its header and line pointers describe disjoint tuples inside it, a
 * decision join takes again from the same bytes (the header and line pointers are never
 * moved, and each tuple's t_hoff byte stays in the first stream before its data). Any other
 * page (an index or free-space page, zeroes, damage) and a short last page are kept whole
 * in the first stream, so any input is reproduced, whatever it holds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 8192
#define PAGE_HEADER 24
#define LP_NORMAL 1
#define TUPLE_MIN 24   /* a heap tuple header is 23 bytes */
#define HOFF_AT 22     /* offset of t_hoff in a heap tuple header */
#define HEAD 5         /* skip u8 + first stream length u32 */
#define MAX_ITEMS ((PAGE - PAGE_HEADER) / 4)

typedef struct { uint16_t off, len; } Item;

static int by_offset(const void *a, const void *b)
{
    return (int)((const Item *)a)->off - (int)((const Item *)b)->off;
}

/* The tuples of a page in offset order, from its header and line pointers (the page's
 * first pd_lower bytes); -1 when they do not describe disjoint tuples within the page. */
static int page_items(const unsigned char *page, Item *items)
{
    unsigned lower = page[12] | (page[13] << 8);
    if (lower < PAGE_HEADER || lower > PAGE)
        return -1;
    int n = 0, descending = 1;
    for (unsigned at = PAGE_HEADER; at + 4 <= lower; at += 4) {
        uint32_t lp = page[at] | (page[at + 1] << 8) | (page[at + 2] << 16) | ((uint32_t)page[at + 3] << 24);
        unsigned off = lp & 0x7fff, flags = (lp >> 15) & 3, len = lp >> 17;
        if (flags != LP_NORMAL || len == 0)
            continue;
        if (off < lower || len < TUPLE_MIN || off + len > PAGE)
            return -1;
        if (n && off >= items[n - 1].off)
            descending = 0;
        items[n].off = (uint16_t)off;
        items[n].len = (uint16_t)len;
        n++;
    }
    if (descending) {
        for (int i = 0; i < n / 2; i++) {
            Item t = items[i];
            items[i] = items[n - 1 - i];
            items[n - 1 - i] = t;
        }
    } else
        qsort(items, n, sizeof(Item), by_offset);
    for (int i = 1; i < n; i++)
        if (items[i].off < items[i - 1].off + items[i - 1].len)
            return -1;
    return n;
}

/* Where the moved part of a tuple at ``off`` starts, given its t_hoff byte. */
static unsigned data_start(unsigned off, unsigned hoff, unsigned skip)
{
    return off + (hoff > TUPLE_MIN ? hoff : TUPLE_MIN) + skip;
}

static PyObject *split(PyObject *self, PyObject *args)
{
    Py_buffer view;
    int skip;
    if (!PyArg_ParseTuple(args, "y*i", &view, &skip))
        return NULL;
    if (skip < 0 || skip > 255) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "skip must be 0..255");
        return NULL;
    }
    if (view.len > 0x7fffffff) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "data too large");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, HEAD + view.len);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    unsigned char *first = (unsigned char *)PyBytes_AS_STRING(out) + HEAD;
    unsigned char *second = malloc(view.len ? view.len : 1);
    if (second == NULL) {
        Py_DECREF(out);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    Py_ssize_t a = 0, b = 0;
    const unsigned char *src = view.buf;
    Py_BEGIN_ALLOW_THREADS
    Item items[MAX_ITEMS];
    for (Py_ssize_t start = 0; start < view.len; start += PAGE) {
        const unsigned char *page = src + start;
        Py_ssize_t size = view.len - start < PAGE ? view.len - start : PAGE;
        int n = size == PAGE ? page_items(page, items) : -1;
        unsigned pos = 0;
        for (int i = 0; i < n; i++) {
            unsigned from = data_start(items[i].off, page[items[i].off + HOFF_AT], skip);
            unsigned end = items[i].off + items[i].len;
            if (from >= end)
                continue;
            memcpy(first + a, page + pos, from - pos);
            a += from - pos;
            memcpy(second + b, page + from, end - from);
            b += end - from;
            pos = end;
        }
        memcpy(first + a, page + pos, size - pos);
        a += size - pos;
    }
    memcpy(first + a, second, b);
    Py_END_ALLOW_THREADS
    free(second);
    unsigned char *head = (unsigned char *)PyBytes_AS_STRING(out);
    head[0] = (unsigned char)skip;
    head[1] = a & 0xff;
    head[2] = (a >> 8) & 0xff;
    head[3] = (a >> 16) & 0xff;
    head[4] = (a >> 24) & 0xff;
    PyBuffer_Release(&view);
    return out;
}

/* Copy ``n`` bytes of a stream into the page; 0 when the stream holds fewer. */
static int take(unsigned char *to, const unsigned char *stream, Py_ssize_t *at, Py_ssize_t end,
                Py_ssize_t n)
{
    if (n > end - *at)
        return 0;
    memcpy(to, stream + *at, n);
    *at += n;
    return 1;
}

/* Rebuild the pages of ``total`` bytes from a split's two streams into ``dst``; 0 when the
 * streams do not match the pages their headers and line pointers describe. */
static int join_into(unsigned skip, const unsigned char *first, Py_ssize_t a_len,
                     const unsigned char *second, Py_ssize_t b_len, unsigned char *dst,
                     Py_ssize_t total)
{
    Py_ssize_t a = 0, b = 0;
    int ok = 1;
    Item items[MAX_ITEMS];
    for (Py_ssize_t start = 0; ok && start < total; start += PAGE) {
        unsigned char *page = dst + start;
        Py_ssize_t size = total - start < PAGE ? total - start : PAGE;
        if (size < PAGE || !take(page, first, &a, a_len, PAGE_HEADER)) {
            ok = take(page, first, &a, a_len, size);
            continue;
        }
        unsigned lower = page[12] | (page[13] << 8);
        if (lower < PAGE_HEADER || lower > PAGE) {
            ok = take(page + PAGE_HEADER, first, &a, a_len, PAGE - PAGE_HEADER);
            continue;
        }
        if (!take(page + PAGE_HEADER, first, &a, a_len, lower - PAGE_HEADER))
            return 0;
        int n = page_items(page, items);
        unsigned pos = lower;
        for (int i = 0; ok && i < n; i++) {
            unsigned off = items[i].off, end = off + items[i].len;
            ok = take(page + pos, first, &a, a_len, off + HOFF_AT + 1 - pos);
            if (!ok)
                break;
            unsigned from = data_start(off, page[off + HOFF_AT], skip);
            if (from >= end) {
                pos = off + HOFF_AT + 1;
                continue;
            }
            ok = take(page + off + HOFF_AT + 1, first, &a, a_len, from - (off + HOFF_AT + 1))
                 && take(page + from, second, &b, b_len, end - from);
            pos = end;
        }
        if (ok)
            ok = take(page + pos, first, &a, a_len, PAGE - pos);
    }
    return ok && a == a_len && b == b_len;
}

/* The header of a split: its skip and first stream's length; 0 when damaged. */
static int parse_head(const unsigned char *src, Py_ssize_t len, unsigned *skip, Py_ssize_t *a_len)
{
    if (len < HEAD)
        return 0;
    *skip = src[0];
    *a_len = src[1] | (src[2] << 8) | (src[3] << 16) | ((Py_ssize_t)src[4] << 24);
    return *a_len <= len - HEAD;
}

static PyObject *join(PyObject *self, PyObject *args)
{
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view))
        return NULL;
    const unsigned char *src = view.buf;
    unsigned skip;
    Py_ssize_t a_len;
    if (!parse_head(src, view.len, &skip, &a_len)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "split heap pages: damaged header");
        return NULL;
    }
    Py_ssize_t total = view.len - HEAD;
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = join_into(skip, src + HEAD, a_len, src + HEAD + a_len, total - a_len,
                   (unsigned char *)PyBytes_AS_STRING(out), total);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (!ok) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_ValueError, "split heap pages: the streams do not match their pages");
        return NULL;
    }
    return out;
}

static PyObject *joins_back(PyObject *self, PyObject *args)
{
    Py_buffer view, data;
    if (!PyArg_ParseTuple(args, "y*y*", &view, &data))
        return NULL;
    const unsigned char *src = view.buf;
    unsigned skip;
    Py_ssize_t a_len;
    int ok = parse_head(src, view.len, &skip, &a_len) && view.len - HEAD == data.len;
    if (ok) {
        unsigned char *pages = malloc(data.len ? data.len : 1);
        if (pages == NULL) {
            PyBuffer_Release(&view);
            PyBuffer_Release(&data);
            return PyErr_NoMemory();
        }
        Py_BEGIN_ALLOW_THREADS
        ok = join_into(skip, src + HEAD, a_len, src + HEAD + a_len, data.len - a_len, pages, data.len)
             && memcmp(pages, data.buf, data.len) == 0;
        Py_END_ALLOW_THREADS
        free(pages);
    }
    PyBuffer_Release(&view);
    PyBuffer_Release(&data);
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"split", split, METH_VARARGS,
     "split(data, skip) -> bytes: heap pages with their tuples' data moved after the rest."},
    {"join", join, METH_VARARGS, "join(split) -> bytes: the pages split() was given."},
    {"joins_back", joins_back, METH_VARARGS,
     "joins_back(split, data) -> bool: whether join(split) == data, without a Python object."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_heapsplit", NULL, -1, methods};

PyMODINIT_FUNC PyInit__heapsplit(void) { return PyModule_Create(&module); }
