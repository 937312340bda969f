"""Writes a deterministic synthetic benchmark text (default 10 MB, UTF-8, one document per line).

Words are random concatenations of the model's own normal pieces (so segmentation has real
merge/lattice work), mixed with random CJK and other characters (byte fallback), digits,
punctuation, tabs and runs of spaces (ChatGLM's blank pieces). No third-party text.

With STYLE `zipf`, words are instead drawn from a fixed lexicon of 30000 such words with
Zipf weights (1/rank), as in natural text where most running words repeat; the default
`uniform` style makes about a third of all words distinct (a worst case for word caches).

usage: python3 make_text.py MODEL OUT [MEGABYTES] [uniform|zipf]
"""
import random
import sys

from sentencepiece import sentencepiece_model_pb2 as pb


def main():
    model, out = sys.argv[1], sys.argv[2]
    megabytes = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    style = sys.argv[4] if len(sys.argv) > 4 else "uniform"
    proto = pb.ModelProto()
    with open(model, "rb") as f:
        proto.ParseFromString(f.read())
    normal = [p.piece for p in proto.pieces if p.type == pb.ModelProto.SentencePiece.NORMAL]
    rng = random.Random(20261126)
    extra = "你好世界图片描述这张里有什么猫狗龘靐齉こんにちは안녕Привет😀👋éü"
    target = int(megabytes * 1_000_000)

    def make_word():
        if rng.random() < 0.85:
            word = "".join(rng.choice(normal) for _ in range(rng.randint(1, 3)))
            return word.replace("\u2581", " ")
        return "".join(rng.choice(extra) for _ in range(rng.randint(1, 4)))

    lexicon = [make_word() for _ in range(30000)]
    cum, total = [], 0.0
    for rank in range(len(lexicon)):
        total += 1.0 / (rank + 1)
        cum.append(total)
    size = 0
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        while size < target:
            parts = []
            for _ in range(rng.randint(3, 40)):
                r = rng.random()
                if r < 0.90 and style == "zipf":
                    parts.append(rng.choices(lexicon, cum_weights=cum)[0])
                elif r < 0.80:
                    word = "".join(rng.choice(normal) for _ in range(rng.randint(1, 3)))
                    parts.append(word.replace("\u2581", " "))
                elif r < 0.90:
                    parts.append("".join(rng.choice(extra) for _ in range(rng.randint(1, 4))))
                elif r < 0.95:
                    parts.append(str(rng.randint(0, 10**6)) + rng.choice(",.;:!?。，"))
                elif r < 0.98:
                    parts.append(" " * rng.randint(2, 12))
                else:
                    parts.append("\t")
            line = " ".join(parts)
            f.write(line + "\n")
            size += len(line.encode("utf-8")) + 1


if __name__ == "__main__":
    main()
