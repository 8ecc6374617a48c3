/*
 * PostgreSQL page checksums, computed the way PostgreSQL does (storage/checksum_impl.h:
 * an FNV-1a variant over 32 parallel lanes of an 8 KB page, pd_checksum counted as zero,
 * mixed with the block number), for Lifeboat's backup: it checks every page it reads.
 * Written in C because it runs over every byte backed up; it releases the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PAGE 8192
#define N_SUMS 32
#define FNV_PRIME 16777619u

/* PostgreSQL's lane seeds: part of its on-disk format. */
static const uint32_t base_offsets[N_SUMS] = {
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756};

static inline uint32_t mix(uint32_t sum, uint32_t value)
{
    uint32_t tmp = sum ^ value;
    return tmp * FNV_PRIME ^ (tmp >> 17);
}

static uint16_t page_checksum(const unsigned char *page, uint32_t block)
{
    uint32_t words[PAGE / 4];
    uint32_t sums[N_SUMS];
    uint32_t result = 0;
    memcpy(words, page, PAGE);
    memset((unsigned char *) words + 8, 0, 2); /* pd_checksum */
    memcpy(sums, base_offsets, sizeof(sums));
    for (int i = 0; i < PAGE / (4 * N_SUMS); i++)
        for (int j = 0; j < N_SUMS; j++)
            sums[j] = mix(sums[j], words[i * N_SUMS + j]);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < N_SUMS; j++)
            sums[j] = mix(sums[j], 0);
    for (int j = 0; j < N_SUMS; j++)
        result ^= sums[j];
    result ^= block;
    return (uint16_t) ((result % 65535) + 1);
}

/* Whether the page at `page` (block `block`) should be judged and fails its checksum. */
static int page_fails(const unsigned char *page, uint32_t block, uint64_t start_lsn)
{
    uint32_t lsn_high, lsn_low;
    uint16_t stored, upper;
    memcpy(&lsn_high, page, 4);
    memcpy(&lsn_low, page + 4, 4);
    memcpy(&stored, page + 8, 2);
    memcpy(&upper, page + 14, 2);
    if (upper == 0) /* a new page: all zero, nothing to check */
        return 0;
    if ((((uint64_t) lsn_high) << 32 | lsn_low) >= start_lsn) /* WAL replay rewrites it */
        return 0;
    return page_checksum(page, block) != stored;
}

PyDoc_STRVAR(bad_pages_doc,
"bad_pages(data, first_block, start_lsn, only=None) -> list of page offsets\n\n"
"Pages of `data` (whole 8 KB pages, block numbers from `first_block`) that fail their\n"
"checksum, skipping new pages and pages whose LSN is at or past `start_lsn`; `only`\n"
"restricts the check to those page offsets.");

static PyObject *bad_pages(PyObject *self, PyObject *args)
{
    Py_buffer view;
    unsigned long long first_block, start_lsn;
    PyObject *only = Py_None;
    if (!PyArg_ParseTuple(args, "y*KK|O", &view, &first_block, &start_lsn, &only))
        return NULL;
    Py_ssize_t pages = view.len / PAGE, count = pages;
    Py_ssize_t *index = NULL;
    if (only != Py_None) {
        PyObject *seq = PySequence_Fast(only, "only must be a sequence of page offsets");
        if (seq == NULL) {
            PyBuffer_Release(&view);
            return NULL;
        }
        count = PySequence_Fast_GET_SIZE(seq);
        index = PyMem_Malloc(sizeof(Py_ssize_t) * (count ? count : 1));
        for (Py_ssize_t i = 0; index != NULL && i < count; i++) {
            index[i] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(seq, i));
            if (index[i] < 0 || index[i] >= pages) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "page offset outside the data");
                PyMem_Free(index);
                index = NULL;
            }
        }
        Py_DECREF(seq);
        if (index == NULL) {
            PyBuffer_Release(&view);
            return PyErr_Occurred() ? NULL : PyErr_NoMemory();
        }
    }
    unsigned char *failed = PyMem_Calloc(count ? count : 1, 1);
    if (failed == NULL) {
        PyMem_Free(index);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    const unsigned char *data = view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t page = index ? index[i] : i;
        failed[i] = (unsigned char) page_fails(data + page * PAGE,
                                               (uint32_t) (first_block + page), start_lsn);
    }
    Py_END_ALLOW_THREADS
    PyObject *result = PyList_New(0);
    for (Py_ssize_t i = 0; result != NULL && i < count; i++) {
        if (failed[i]) {
            PyObject *offset = PyLong_FromSsize_t(index ? index[i] : i);
            if (offset == NULL || PyList_Append(result, offset) < 0)
                Py_CLEAR(result);
            Py_XDECREF(offset);
        }
    }
    PyMem_Free(failed);
    PyMem_Free(index);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"bad_pages", bad_pages, METH_VARARGS, bad_pages_doc},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pagecheck",
    "PostgreSQL page checksums (see engine.pagecheck).", -1, methods};

PyMODINIT_FUNC PyInit__pagecheck(void)
{
    return PyModule_Create(&module);
}
