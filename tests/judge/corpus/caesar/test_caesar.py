from caesar import crack, decode, encode, rot13, shift_char


def test_shift_char():
    assert shift_char("a", 1) == "b"
    assert shift_char("z", 1) == "a"
    assert shift_char("Z", 2) == "B"
    assert shift_char("!", 5) == "!"
    assert shift_char("m", 0) == "m"


def test_encode():
    assert encode("Hello, World", 3) == "Khoor, Zruog"


def test_decode():
    assert decode("Khoor, Zruog", 3) == "Hello, World"
    assert decode(encode("abc xyz", 25), 25) == "abc xyz"


def test_rot13_involution():
    assert rot13("Python") == "Clguba"
    assert rot13(rot13("Python")) == "Python"


def test_crack():
    assert crack(encode("attack at dawn", 7), "dawn") == 7
    assert crack("abc", "zzz") is None
