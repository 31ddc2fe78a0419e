"""Small dense matrices as lists of lists."""


def shape(m):
    return (len(m), len(m[0]) if m else 0)


def identity(n):
    return [[1 if i == j else 0 for j in range(n)] for i in range(n)]


def transpose(m):
    rows, cols = shape(m)
    return [[m[i][j] for i in range(rows)] for j in range(cols)]


def multiply(a, b):
    ar, ac = shape(a)
    br, bc = shape(b)
    if ac != br:
        raise ValueError(f"shapes {ar}x{ac} and {br}x{bc} do not align")
    return [[sum(a[i][k] * b[k][j] for k in range(ac)) for j in range(bc)] for i in range(ar)]


def trace(m):
    rows, cols = shape(m)
    if rows != cols:
        raise ValueError("not square")
    return sum(m[i][i] for i in range(rows))
