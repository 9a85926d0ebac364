/*
 * Exact WSOL box extraction at every threshold of a quantised score map in two union-find passes.
 *
 * The reference (wsolevaluation) runs cv2.findContours(RETR_TREE) once per threshold. The
 * contours it finds are (a) the outer border of every 8-connected foreground component and
 * (b) the border of every hole (4-connected background component that does not touch the image
 * border). Their cv2.boundingRect boxes are the component's bounding box, and the hole's bounding
 * box grown by one pixel on each side. cv2.contourArea of the outer border of a hole-free
 * component equals  #(2x2 cells with 4 corners in it) + #(cells with 3 corners in it) / 2.
 * Among equal areas the reference keeps the contour that OpenCV lists first: the component whose
 * first pixel in raster order comes last.
 *
 * So, instead of one contour search per threshold:
 *   pass 1 adds foreground pixels from the highest level down (union-find, 8-connectivity),
 *          keeping per component its bounding box, doubled cell area and first pixel;
 *   pass 2 adds background pixels from the lowest level up (union-find, 4-connectivity, with the
 *          border connected to "outside"), keeping per hole its bounding box.
 * After each distinct cut, the live components and holes are exactly the reference's contours.
 *
 * Outputs per distinct cut j (cuts ascending):
 *   v2[j]      best IoU of any contour box with any GT box (the multi-contour rule);
 *   v1box[j]   box of the largest contour (single-contour rule);
 *   flag[j]    1 when the area rule above cannot decide (several components while holes exist):
 *              the caller then runs the contour search for that cut.
 * Boxes follow the reference: (x, y, min(x + w, W - 1), min(y + h, H - 1)); IoU is inclusive.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t x0, y0, x1, y1;
    int32_t size;  /* pixels, for union by size */
    int32_t q2;    /* twice the contour area (pass 1) */
    int32_t first; /* smallest raster index (pass 1) */
    int32_t touch; /* touches the border (pass 2) */
} Region;

typedef struct {
    int32_t *parent;
    Region *reg;
    int32_t *active; /* live regions */
    int32_t *pos;    /* position of a root in active, -1 if not listed */
    int32_t n_active;
} Forest;

static inline int32_t find_root(int32_t *parent, int32_t x) {
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

static inline void list_add(Forest *f, int32_t r) {
    f->pos[r] = f->n_active;
    f->active[f->n_active++] = r;
}

static inline void list_remove(Forest *f, int32_t r) {
    int32_t i = f->pos[r];
    if (i < 0) return;
    int32_t last = f->active[--f->n_active];
    f->active[i] = last;
    f->pos[last] = i;
    f->pos[r] = -1;
}

/* Merge two distinct roots (union by size); returns the surviving root. */
static inline int32_t merge_roots(Forest *f, int32_t ra, int32_t rb) {
    if (f->reg[ra].size < f->reg[rb].size) { int32_t t = ra; ra = rb; rb = t; }
    Region *A = &f->reg[ra], *B = &f->reg[rb];
    f->parent[rb] = ra;
    if (B->x0 < A->x0) A->x0 = B->x0;
    if (B->y0 < A->y0) A->y0 = B->y0;
    if (B->x1 > A->x1) A->x1 = B->x1;
    if (B->y1 > A->y1) A->y1 = B->y1;
    A->size += B->size;
    A->q2 += B->q2;
    if (B->first < A->first) A->first = B->first;
    list_remove(f, rb);
    if (B->touch && !A->touch) {
        A->touch = 1;
        list_remove(f, ra);
    }
    return ra;
}

/* Join pixel p (not yet added) to its already-added neighbour q. *root is p's root so far, -1 if none. */
static inline void join(Forest *f, int32_t p, int32_t q, int32_t x, int32_t y, int32_t *root) {
    int32_t pq = f->parent[q];
    if (pq == *root) return; /* the common case: q already hangs directly under p's root */
    int32_t rq = find_root(f->parent, q);
    if (*root < 0) {
        Region *r = &f->reg[rq];
        f->parent[p] = rq;
        if (x < r->x0) r->x0 = x;
        if (x > r->x1) r->x1 = x;
        if (y < r->y0) r->y0 = y;
        if (y > r->y1) r->y1 = y;
        if (p < r->first) r->first = p;
        r->size += 1;
        *root = rq;
    } else if (rq != *root) {
        *root = merge_roots(f, *root, rq);
    }
}

static inline double iou_max(const int64_t *gt, Py_ssize_t n_gt, int64_t x0, int64_t y0, int64_t x1, int64_t y1) {
    double best = 0.0;
    int64_t area = (x1 - x0 + 1) * (y1 - y0 + 1);
    for (Py_ssize_t g = 0; g < n_gt; g++) {
        const int64_t *b = gt + 4 * g;
        int64_t iw = (x1 < b[2] ? x1 : b[2]) - (x0 > b[0] ? x0 : b[0]) + 1;
        int64_t ih = (y1 < b[3] ? y1 : b[3]) - (y0 > b[1] ? y0 : b[1]) + 1;
        if (iw < 0) iw = 0;
        if (ih < 0) ih = 0;
        int64_t inter = iw * ih;
        int64_t uni = area + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter;
        double v = uni > 0 ? (double)inter / (double)uni : 0.0;
        if (v > best) best = v;
    }
    return best;
}

/* Per-thread workspace, grown on demand and reused: fresh allocations of a few MB per map
 * would cost more in page faults than the whole computation. */
typedef struct {
    Py_ssize_t cap_pixels, cap_cuts;
    int32_t *parent1, *parent2, *active1, *active2, *pos1, *pos2, *order;
    Region *reg1, *reg2;
    uint8_t *cells;
    int32_t *holes;
    double *hole_best;
    Py_ssize_t *hole_start; /* per cut: offset of its hole boxes in hole_box */
    int32_t *hole_box;      /* x0, y0, x1, y1 of every hole at every cut */
    Py_ssize_t cap_hole_box;
} Workspace;

static __thread Workspace ws;

static int workspace_reserve(Py_ssize_t n, Py_ssize_t n_cells, Py_ssize_t d) {
    if (n > ws.cap_pixels) {
        int32_t **arrays[] = {&ws.parent1, &ws.parent2, &ws.active1, &ws.active2, &ws.pos1, &ws.pos2, &ws.order};
        for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
            free(*arrays[i]);
            *arrays[i] = (int32_t *)malloc(sizeof(int32_t) * n);
        }
        free(ws.reg1);
        free(ws.reg2);
        free(ws.cells);
        ws.reg1 = (Region *)malloc(sizeof(Region) * n);
        ws.reg2 = (Region *)malloc(sizeof(Region) * n);
        ws.cells = (uint8_t *)malloc(n_cells);
        ws.cap_pixels = n;
        if (!ws.parent1 || !ws.parent2 || !ws.active1 || !ws.active2 || !ws.pos1 || !ws.pos2 || !ws.order ||
            !ws.reg1 || !ws.reg2 || !ws.cells) {
            ws.cap_pixels = 0;
            return -1;
        }
    }
    if (d > ws.cap_cuts) {
        free(ws.holes);
        free(ws.hole_best);
        free(ws.hole_start);
        ws.holes = (int32_t *)malloc(sizeof(int32_t) * d);
        ws.hole_best = (double *)malloc(sizeof(double) * d);
        ws.hole_start = (Py_ssize_t *)malloc(sizeof(Py_ssize_t) * (d + 1));
        ws.cap_cuts = d;
        if (!ws.holes || !ws.hole_best || !ws.hole_start) {
            ws.cap_cuts = 0;
            return -1;
        }
    }
    return 0;
}

/* Room for n more hole boxes; returns -1 when out of memory. */
static int hole_box_reserve(Py_ssize_t used, Py_ssize_t n) {
    if (used + n <= ws.cap_hole_box) return 0;
    Py_ssize_t cap = ws.cap_hole_box ? ws.cap_hole_box : 1024;
    while (cap < used + n) cap *= 2;
    int32_t *grown = (int32_t *)realloc(ws.hole_box, sizeof(int32_t) * 4 * cap);
    if (!grown) return -1;
    ws.hole_box = grown;
    ws.cap_hole_box = cap;
    return 0;
}

static void forest_init(Forest *f, int32_t *parent, Region *reg, int32_t *active, int32_t *pos, Py_ssize_t n) {
    f->parent = parent;
    f->reg = reg;
    f->active = active;
    f->pos = pos;
    f->n_active = 0;
    memset(parent, 0xff, sizeof(int32_t) * n); /* -1: not added yet */
}

/* Make p a region of its own (it had no added neighbour). */
static inline int32_t region_new(Forest *f, int32_t p, int32_t x, int32_t y, int32_t touch) {
    f->parent[p] = p;
    Region *r = &f->reg[p];
    r->x0 = r->x1 = x;
    r->y0 = r->y1 = y;
    r->size = 1;
    r->q2 = 0;
    r->first = p;
    r->touch = touch;
    f->pos[p] = -1;
    if (!touch) list_add(f, p);
    return p;
}

static PyObject *box_kernel(PyObject *self, PyObject *args) {
    Py_buffer mapb, cutb, gtb, v2b, boxb, flagb;
    Py_ssize_t H, W;
    if (!PyArg_ParseTuple(args, "y*nny*y*w*w*w*", &mapb, &H, &W, &cutb, &gtb, &v2b, &boxb, &flagb)) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t N = H * W;
    const Py_ssize_t D = cutb.len / (Py_ssize_t)sizeof(int64_t);
    const Py_ssize_t G = gtb.len / (Py_ssize_t)(4 * sizeof(int64_t));
    const uint8_t *lv = (const uint8_t *)mapb.buf;
    const int64_t *cuts = (const int64_t *)cutb.buf;
    const int64_t *gt = (const int64_t *)gtb.buf;
    double *v2 = (double *)v2b.buf;
    int64_t *v1box = (int64_t *)boxb.buf;
    int64_t *flag = (int64_t *)flagb.buf;
    int32_t *order, *holes;
    double *hole_best;
    uint8_t *cells;
    Forest f1, f2;

    if (H <= 0 || W <= 0 || mapb.len != N || D <= 0 || G <= 0 || v2b.len != D * (Py_ssize_t)sizeof(double) ||
        boxb.len != 4 * D * (Py_ssize_t)sizeof(int64_t) || flagb.len != D * (Py_ssize_t)sizeof(int64_t) ||
        N >= INT32_MAX - 1 || H > 65535 || W > 65535) {
        PyErr_SetString(PyExc_ValueError, "box_kernel: inconsistent buffer sizes");
        goto done;
    }
    if (workspace_reserve(N, (H + 1) * (W + 1), D)) {
        PyErr_NoMemory();
        goto done;
    }
    order = ws.order;
    holes = ws.holes;
    hole_best = ws.hole_best;
    cells = ws.cells;
    memset(cells, 0, (size_t)(H + 1) * (W + 1));
    forest_init(&f1, ws.parent1, ws.reg1, ws.active1, ws.pos1, N);
    forest_init(&f2, ws.parent2, ws.reg2, ws.active2, ws.pos2, N);

#define level_of(packed) lv[((packed) >> 16) * W + ((packed) & 0xffff)]
    Py_BEGIN_ALLOW_THREADS
    /* counting sort of the pixels by level, ascending */
    Py_ssize_t start[257] = {0};
    for (Py_ssize_t p = 0; p < N; p++) start[lv[p] + 1]++;
    for (int l = 0; l < 256; l++) start[l + 1] += start[l];
    {
        Py_ssize_t next[256];
        memcpy(next, start, sizeof(next));
        /* packed (y << 16 | x): no division per pixel later */
        for (int32_t y = 0, p = 0; y < H; y++)
            for (int32_t x = 0; x < W; x++, p++) order[next[lv[p]]++] = (y << 16) | x;
    }

    /* pass 2: holes; background at cut c is {level <= c}, grown with ascending c */
    {
        Py_ssize_t idx = 0, used = 0;
        int oom = 0;
        for (Py_ssize_t j = 0; j < D; j++) {
            int64_t c = cuts[j];
            while (idx < N && (int64_t)level_of(order[idx]) <= c) {
                int32_t y = order[idx] >> 16, x = order[idx] & 0xffff, w = (int32_t)W;
                int32_t p = y * w + x;
                idx++;
                int32_t root = -1;
                if (x > 0 && f2.parent[p - 1] >= 0) join(&f2, p, p - 1, x, y, &root);
                if (x < W - 1 && f2.parent[p + 1] >= 0) join(&f2, p, p + 1, x, y, &root);
                if (y > 0 && f2.parent[p - w] >= 0) join(&f2, p, p - w, x, y, &root);
                if (y < H - 1 && f2.parent[p + w] >= 0) join(&f2, p, p + w, x, y, &root);
                int32_t border = (x == 0 || y == 0 || x == W - 1 || y == H - 1);
                if (root < 0) {
                    region_new(&f2, p, x, y, border);
                } else if (border && !f2.reg[root].touch) {
                    f2.reg[root].touch = 1;
                    list_remove(&f2, root);
                }
            }
            double best = 0.0;
            ws.hole_start[j] = used;
            if (!oom && hole_box_reserve(used, f2.n_active)) oom = 1;
            for (int32_t k = 0; k < f2.n_active; k++) {
                Region *r = &f2.reg[f2.active[k]];
                if (!oom) {
                    int32_t *hb = ws.hole_box + 4 * used++;
                    hb[0] = r->x0;
                    hb[1] = r->y0;
                    hb[2] = r->x1;
                    hb[3] = r->y1;
                }
                int64_t bx1 = r->x1 + 2, by1 = r->y1 + 2;
                if (bx1 > W - 1) bx1 = W - 1;
                if (by1 > H - 1) by1 = H - 1;
                double v = iou_max(gt, G, r->x0 - 1, r->y0 - 1, bx1, by1);
                if (v > best) best = v;
            }
            holes[j] = f2.n_active;
            hole_best[j] = best;
        }
        ws.hole_start[D] = used;
        if (oom) /* no room for the boxes: let the caller decide those cuts */
            for (Py_ssize_t j = 0; j < D; j++) ws.hole_start[j] = ws.hole_start[D] = 0;
    }

    /* pass 1: components; foreground at cut c is {level > c}, grown with descending c */
    {
        static const int32_t weight[5] = {0, 0, 0, 1, 2};
        Py_ssize_t idx = N - 1;
        const Py_ssize_t CW = W + 1;
        for (Py_ssize_t j = D - 1; j >= 0; j--) {
            int64_t c = cuts[j];
            while (idx >= 0 && (int64_t)level_of(order[idx]) > c) {
                int32_t y = order[idx] >> 16, x = order[idx] & 0xffff, w = (int32_t)W;
                int32_t p = y * w + x;
                idx--;
                int32_t r = -1;
                /* Added pixels that are 8-adjacent are already in one set, so a diagonal neighbour
                 * needs a look only when neither 4-neighbour next to it is added (and W/E only when
                 * neither N nor S is). */
                const int32_t *par = f1.parent;
                int nN = y > 0 && par[p - w] >= 0, nS = y < H - 1 && par[p + w] >= 0;
                int nW = x > 0 && par[p - 1] >= 0, nE = x < W - 1 && par[p + 1] >= 0;
                if (nN) join(&f1, p, p - w, x, y, &r);
                if (nS) join(&f1, p, p + w, x, y, &r);
                if (!nN && !nS) {
                    if (nW) join(&f1, p, p - 1, x, y, &r);
                    if (nE) join(&f1, p, p + 1, x, y, &r);
                }
                if (!nN) {
                    if (!nW && x > 0 && y > 0 && par[p - w - 1] >= 0) join(&f1, p, p - w - 1, x, y, &r);
                    if (!nE && x < W - 1 && y > 0 && par[p - w + 1] >= 0) join(&f1, p, p - w + 1, x, y, &r);
                }
                if (!nS) {
                    if (!nW && x > 0 && y < H - 1 && par[p + w - 1] >= 0) join(&f1, p, p + w - 1, x, y, &r);
                    if (!nE && x < W - 1 && y < H - 1 && par[p + w + 1] >= 0) join(&f1, p, p + w + 1, x, y, &r);
                }
                if (r < 0) r = region_new(&f1, p, x, y, 0);
                /* the 4 cells having p as a corner: all their foreground corners are in p's component */
                Py_ssize_t c0 = (Py_ssize_t)y * CW + x;
                Py_ssize_t cs[4] = {c0, c0 + 1, c0 + CW, c0 + CW + 1};
                int32_t dq = 0;
                for (int k = 0; k < 4; k++) {
                    uint8_t old = cells[cs[k]]++;
                    dq += weight[old + 1] - weight[old];
                }
                f1.reg[r].q2 += dq;
            }
            int64_t *box = v1box + 4 * j;
            flag[j] = 0;
            if (f1.n_active == 0) {
                box[0] = box[1] = box[2] = box[3] = 0;
                double v = iou_max(gt, G, 0, 0, 0, 0);
                v2[j] = v > hole_best[j] ? v : hole_best[j];
                continue;
            }
            double best = hole_best[j];
            int32_t pick = -1;
            for (int32_t k = 0; k < f1.n_active; k++) {
                int32_t root = f1.active[k];
                Region *r = &f1.reg[root];
                int64_t bx1 = r->x1 + 1, by1 = r->y1 + 1;
                if (bx1 > W - 1) bx1 = W - 1;
                if (by1 > H - 1) by1 = H - 1;
                double v = iou_max(gt, G, r->x0, r->y0, bx1, by1);
                if (v > best) best = v;
                if (pick < 0 || r->q2 > f1.reg[pick].q2 ||
                    (r->q2 == f1.reg[pick].q2 && r->first > f1.reg[pick].first))
                    pick = root;
            }
            v2[j] = best;
            Region *r = &f1.reg[pick];
            box[0] = r->x0;
            box[1] = r->y0;
            box[2] = r->x1 + 1 > W - 1 ? W - 1 : r->x1 + 1;
            box[3] = r->y1 + 1 > H - 1 ? H - 1 : r->y1 + 1;
            if (f1.n_active > 1 && holes[j] > 0) {
                /* Holes add area to the component around them: contourArea = Q(filled component).
                 * The pick stands if its hole-free area beats every other component's upper bound
                 * Q(Y) + sum over holes inside Y's box of the cells they can touch; else ask the caller. */
                Py_ssize_t h0 = ws.hole_start[j], h1 = ws.hole_start[j + 1];
                if (h1 - h0 != holes[j]) {
                    flag[j] = 1;
                    continue;
                }
                for (int32_t k = 0; k < f1.n_active && !flag[j]; k++) {
                    int32_t root = f1.active[k];
                    if (root == pick) continue;
                    Region *y = &f1.reg[root];
                    int64_t bound = y->q2;
                    for (Py_ssize_t h = h0; h < h1; h++) {
                        const int32_t *hb = ws.hole_box + 4 * h;
                        if (hb[0] > y->x0 && hb[2] < y->x1 && hb[1] > y->y0 && hb[3] < y->y1)
                            bound += 2 * (int64_t)(hb[2] - hb[0] + 2) * (hb[3] - hb[1] + 2);
                    }
                    if (bound >= r->q2) flag[j] = 1;
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);

done:
    PyBuffer_Release(&mapb);
    PyBuffer_Release(&cutb);
    PyBuffer_Release(&gtb);
    PyBuffer_Release(&v2b);
    PyBuffer_Release(&boxb);
    PyBuffer_Release(&flagb);
    return result;
}

static PyMethodDef methods[] = {
    {"box_kernel", box_kernel, METH_VARARGS,
     "box_kernel(levels, H, W, cuts, gt, out_v2, out_v1box, out_flag): boxes at every cut (see module source)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_boxkernel",
                                    "Exact multi-threshold WSOL box extraction (union-find).", -1, methods};

PyMODINIT_FUNC PyInit__boxkernel(void) { return PyModule_Create(&module); }
