"""Files -> pages -> prompts -> model answers -> blocks -> JSON, Markdown, PNG, ZIP.

inputs (files to pages), resize (the model's input size), prompts (what each family is asked),
parsers (answers to boxes, with repair), coords (boxes back onto the page), layout (Document,
Page, Block), export (outputs), pipeline (one request per page; LocalRunner), jobs (a document
job as data), metrics (CER). Everything but pipeline's runners is pure.
"""
