"""A tokenizer and evaluator for reverse Polish notation."""

OPS = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}


def tokenize(expr):
    tokens = []
    for tok in expr.split():
        if tok in OPS:
            tokens.append(tok)
        else:
            try:
                tokens.append(float(tok))
            except ValueError:
                raise ValueError(f"bad token {tok!r}") from None
    return tokens


def evaluate(expr):
    stack = []
    for tok in tokenize(expr):
        if isinstance(tok, float):
            stack.append(tok)
            continue
        if len(stack) < 2:
            raise ValueError("not enough operands")
        b = stack.pop()
        a = stack.pop()
        if tok == "/" and b == 0:
            raise ZeroDivisionError("division by zero")
        stack.append(OPS[tok](a, b))
    if len(stack) != 1:
        raise ValueError("malformed expression")
    return stack[0]
