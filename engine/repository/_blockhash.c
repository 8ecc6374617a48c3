/*
 * Block ids of a whole buffer in one call: the first 16 bytes of the SHA-256 of each
 * block, concatenated (engine.repository.layout.block_ids), or of its HMAC-SHA256 under
 * a key (an encrypted repository's name key). Python's hashlib would take and give back
 * the GIL once per block: with several copy threads that hand-over costs more than the
 * hashing. Here the GIL is released once per buffer; OpenSSL's SHA-256 uses the CPU's SHA
 * instructions where it has them. The HMAC's padded key blocks are hashed once per call
 * and their states copied per block, so keying costs two SHA-256 blocks per block.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>

#define ID_BYTES 16
#define SHA256_BLOCK 64

/* The states of SHA-256 after the HMAC's inner and outer padded key blocks. */
static int hmac_states(EVP_MD_CTX *inner, EVP_MD_CTX *outer, const EVP_MD *sha256,
                       const unsigned char *key, Py_ssize_t key_len)
{
    unsigned char block[SHA256_BLOCK], pad[SHA256_BLOCK];
    unsigned int len;
    memset(block, 0, sizeof block);
    if (key_len > SHA256_BLOCK) {
        if (!EVP_Digest(key, key_len, block, &len, sha256, NULL))
            return 0;
    } else
        memcpy(block, key, key_len);
    for (int i = 0; i < SHA256_BLOCK; i++)
        pad[i] = block[i] ^ 0x36;
    if (!EVP_DigestInit_ex(inner, sha256, NULL) || !EVP_DigestUpdate(inner, pad, SHA256_BLOCK))
        return 0;
    for (int i = 0; i < SHA256_BLOCK; i++)
        pad[i] = block[i] ^ 0x5c;
    return EVP_DigestInit_ex(outer, sha256, NULL) && EVP_DigestUpdate(outer, pad, SHA256_BLOCK);
}

static PyObject *block_ids(PyObject *self, PyObject *args)
{
    Py_buffer view, key = {0};
    Py_ssize_t block_size;
    PyObject *key_object = Py_None;
    if (!PyArg_ParseTuple(args, "y*n|O", &view, &block_size, &key_object))
        return NULL;
    if (key_object != Py_None && PyObject_GetBuffer(key_object, &key, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int keyed = key_object != Py_None;
    if (block_size <= 0) {
        PyBuffer_Release(&view);
        if (keyed)
            PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "block_size must be positive");
        return NULL;
    }
    Py_ssize_t blocks = (view.len + block_size - 1) / block_size;
    PyObject *out = PyBytes_FromStringAndSize(NULL, blocks * ID_BYTES);
    if (out == NULL) {
        PyBuffer_Release(&view);
        if (keyed)
            PyBuffer_Release(&key);
        return NULL;
    }
    unsigned char *ids = (unsigned char *) PyBytes_AS_STRING(out);
    const unsigned char *data = view.buf;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_MD_CTX *inner = keyed ? EVP_MD_CTX_new() : NULL;
    EVP_MD_CTX *outer = keyed ? EVP_MD_CTX_new() : NULL;
    const EVP_MD *sha256 = EVP_sha256();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len;
    if (ctx == NULL || (keyed && (inner == NULL || outer == NULL
                                  || !hmac_states(inner, outer, sha256, key.buf, key.len))))
        failed = 1;
    for (Py_ssize_t i = 0; i < blocks && !failed; i++) {
        Py_ssize_t start = i * block_size;
        Py_ssize_t len = view.len - start < block_size ? view.len - start : block_size;
        if (keyed) {
            if (!EVP_MD_CTX_copy_ex(ctx, inner) || !EVP_DigestUpdate(ctx, data + start, len)
                || !EVP_DigestFinal_ex(ctx, digest, &digest_len)
                || !EVP_MD_CTX_copy_ex(ctx, outer) || !EVP_DigestUpdate(ctx, digest, digest_len)
                || !EVP_DigestFinal_ex(ctx, digest, &digest_len))
                failed = 1;
        } else if (!EVP_DigestInit_ex(ctx, sha256, NULL) || !EVP_DigestUpdate(ctx, data + start, len)
                   || !EVP_DigestFinal_ex(ctx, digest, &digest_len))
            failed = 1;
        if (!failed)
            memcpy(ids + i * ID_BYTES, digest, ID_BYTES);
    }
    EVP_MD_CTX_free(ctx);
    EVP_MD_CTX_free(inner);
    EVP_MD_CTX_free(outer);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (keyed)
        PyBuffer_Release(&key);
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
    "block_ids(buffer, block_size, key=None) -> bytes\n\n"
    "The first 16 bytes of the SHA-256 of each block_size block of buffer (the last may\n"
    "be shorter), concatenated; of the HMAC-SHA256 under key when one is given.");

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
