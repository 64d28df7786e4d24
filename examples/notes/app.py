"""The notes app: add a few notes through the ORM, then search them three ways.

    alembic upgrade head && python app.py
"""

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from models import Note
from sparsesql.orm import add, coverage, database_url, dense, hybrid, rrf, search, sparse

NOTES = [
    ("n1", "Postgres tuning", "shared_buffers and work_mem decide how much a query can keep in memory", 2023),
    ("n2", "Vector search", "pgvector stores embeddings; HNSW finds near neighbours fast", 2024),
    ("n3", "BM25 basics", "term frequency, inverse document frequency and length normalisation", 2022),
    ("n4", "Hybrid retrieval", "fuse keyword and embedding rankings with reciprocal rank fusion", 2024),
    ("n5", "Garden", "tomatoes need sun, water and patience", 2021),
]


def main() -> None:
    engine = create_engine(database_url())
    with Session(engine) as session:
        report = add(session, [Note(id=i, title=t, body=b, year=y, meta={"source": "app"}) for i, t, b, y in NOTES])
        session.commit()
        print(f"added {report.added}, updated {report.updated}, unchanged {report.unchanged}")

        q = "how do I combine keyword search with embeddings"
        queries = {
            "sparse": search(select(Note), sparse(q)).limit(3),
            "hybrid, rrf, since 2023": search(select(Note).where(Note.year >= 2023), hybrid(sparse(q), dense(q), fusion=rrf())).limit(3),
            "hybrid + PRF + coverage": search(select(Note), hybrid(sparse(q), dense(q))).with_prf().diversify(coverage(lambda_=0.7)).limit(3),
        }
        for label, stmt in queries.items():
            print(f"{label}:  {stmt.dialect}")
            for note, score in stmt.execute(session):
                print(f"  {score:.4f}  {note.id}  {note.title}")
    engine.dispose()


if __name__ == "__main__":
    main()
