"""Caesar and ROT ciphers."""


def shift_char(ch, k):
    if "a" <= ch <= "z":
        return chr((ord(ch) - ord("a") + k) % 26 + ord("a"))
    if "A" <= ch <= "Z":
        return chr((ord(ch) - ord("A") + k) % 26 + ord("A"))
    return ch


def encode(text, k):
    return "".join(shift_char(c, k) for c in text)


def decode(text, k):
    return encode(text, -k)


def rot13(text):
    return encode(text, 13)


def crack(ciphertext, known_word):
    for k in range(26):
        if known_word in decode(ciphertext, k):
            return k
    return None
