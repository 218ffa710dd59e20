-- The default catalogue: global list prices (USD per million tokens, any provider) of
-- current claude and gpt/o-series models, in force for all usage since 2000-01-01.
-- A later change of list price is a new dated row in a new migration, so it never
-- reprices the past. OpenAI bills no cache writes separately: they cost the input price.
INSERT INTO model_price (model, effective_from, input_per_mtok, output_per_mtok,
                         cache_read_per_mtok, cache_write_per_mtok)
SELECT model, DATE '2000-01-01', input, output, cache_read, cache_write
FROM (VALUES
    ('claude-opus-4-5',   5.00, 25.00, 0.50,  6.25),
    ('claude-opus-4-1',  15.00, 75.00, 1.50, 18.75),
    ('claude-opus-4',    15.00, 75.00, 1.50, 18.75),
    ('claude-sonnet-4-6', 3.00, 15.00, 0.30,  3.75),
    ('claude-sonnet-4-5', 3.00, 15.00, 0.30,  3.75),
    ('claude-sonnet-4',   3.00, 15.00, 0.30,  3.75),
    ('claude-3-7-sonnet', 3.00, 15.00, 0.30,  3.75),
    ('claude-haiku-4-5',  1.00,  5.00, 0.10,  1.25),
    ('claude-3-5-haiku',  0.80,  4.00, 0.08,  1.00),
    ('gpt-5.1',           1.25, 10.00, 0.125, 1.25),
    ('gpt-5',             1.25, 10.00, 0.125, 1.25),
    ('gpt-5-codex',       1.25, 10.00, 0.125, 1.25),
    ('gpt-5-mini',        0.25,  2.00, 0.025, 0.25),
    ('gpt-5-nano',        0.05,  0.40, 0.005, 0.05),
    ('gpt-4.1',           2.00,  8.00, 0.50,  2.00),
    ('gpt-4.1-mini',      0.40,  1.60, 0.10,  0.40),
    ('gpt-4.1-nano',      0.10,  0.40, 0.025, 0.10),
    ('gpt-4o',            2.50, 10.00, 1.25,  2.50),
    ('gpt-4o-mini',       0.15,  0.60, 0.075, 0.15),
    ('o3',                2.00,  8.00, 0.50,  2.00),
    ('o3-mini',           1.10,  4.40, 0.55,  1.10),
    ('o4-mini',           1.10,  4.40, 0.275, 1.10),
    ('o1',               15.00, 60.00, 7.50, 15.00)
) AS catalogue (model, input, output, cache_read, cache_write);
