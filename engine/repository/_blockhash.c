/*
 * Block ids of a whole buffer in one call: the first 16 bytes of the SHA-256 of each
 * block, concatenated (engine.repository.layout.block_ids). Python's hashlib would take
 * and give back the GIL once per block: with several copy threads that hand-over costs
 * more than the hashing. Here the GIL is released once per buffer; OpenSSL's SHA-256
 * uses the CPU's SHA instructions where it has them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>

#define ID_BYTES 16

static PyObject *block_ids(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t block_size;
    if (!PyArg_ParseTuple(args, "y*n", &view, &block_size))
        return NULL;
    if (block_size <= 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "block_size must be positive");
        return NULL;
    }
    Py_ssize_t blocks = (view.len + block_size - 1) / block_size;
    PyObject *out = PyBytes_FromStringAndSize(NULL, blocks * ID_BYTES);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    unsigned char *ids = (unsigned char *) PyBytes_AS_STRING(out);
    const unsigned char *data = view.buf;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const EVP_MD *sha256 = EVP_sha256();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len;
    if (ctx == NULL)
        failed = 1;
    for (Py_ssize_t i = 0; i < blocks && !failed; i++) {
        Py_ssize_t start = i * block_size;
        Py_ssize_t len = view.len - start < block_size ? view.len - start : block_size;
        if (!EVP_DigestInit_ex(ctx, sha256, NULL) || !EVP_DigestUpdate(ctx, data + start, len)
            || !EVP_DigestFinal_ex(ctx, digest, &digest_len))
            failed = 1;
        else
            memcpy(ids + i * ID_BYTES, digest, ID_BYTES);
    }
    EVP_MD_CTX_free(ctx);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (failed) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not compute a SHA-256");
        return NULL;
    }
    return out;
}

/* Runs of positions where two strings of ids differ, as (first, count) pairs. */
static PyObject *differing_runs(PyObject *self, PyObject *args)
{
    Py_buffer a, b;
    if (!PyArg_ParseTuple(args, "y*y*", &a, &b))
        return NULL;
    Py_ssize_t longer = a.len > b.len ? a.len : b.len;
    Py_ssize_t count = (longer + ID_BYTES - 1) / ID_BYTES;
    PyObject *runs = PyList_New(0);
    Py_ssize_t start = -1;
    for (Py_ssize_t i = 0; runs != NULL && i <= count; i++) {
        int differ = 0;
        if (i < count) {
            Py_ssize_t at = i * ID_BYTES;
            differ = at + ID_BYTES > a.len || at + ID_BYTES > b.len
                || memcmp((const char *) a.buf + at, (const char *) b.buf + at, ID_BYTES) != 0;
        }
        if (differ && start < 0)
            start = i;
        else if (!differ && start >= 0) {
            PyObject *run = Py_BuildValue("(nn)", start, i - start);
            if (run == NULL || PyList_Append(runs, run) < 0)
                Py_CLEAR(runs);
            Py_XDECREF(run);
            start = -1;
        }
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return runs;
}

PyDoc_STRVAR(differing_runs_doc,
    "differing_runs(ids, other_ids) -> list[tuple[int, int]]\n\n"
    "(first, count) of each run of consecutive positions whose 16-byte ids differ (a\n"
    "position only one of them has differs).");

PyDoc_STRVAR(block_ids_doc,
    "block_ids(buffer, block_size) -> bytes\n\n"
    "The first 16 bytes of the SHA-256 of each block_size block of buffer (the last may\n"
    "be shorter), concatenated.");

static PyMethodDef methods[] = {
    {"block_ids", block_ids, METH_VARARGS, block_ids_doc},
    {"differing_runs", differing_runs, METH_VARARGS, differing_runs_doc},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_blockhash",
    "Block ids of a buffer in one call (see engine.repository.layout).", -1, methods};

PyMODINIT_FUNC PyInit__blockhash(void)
{
    return PyModule_Create(&module);
}
