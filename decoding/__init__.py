"""CTC decoding of the network's outputs into gloss sentences, outside the model.

    config.py        DecodeConfig: the `decode:` section, typed and validated; its command-line options
    decoder.py       Decoder(cfg, gloss_dict, lm): greedy or beam search, gloss sentences; SplitDecoder
    greedy.py        best-path decoding
    beam_search.py   batched CTC prefix beam search, optional LM fusion and pruning
    lm.py            gloss n-gram models: dict scoring (NGramLM), device tables (TokenLM)
    arpa.py          ARPA file reading and writing
    build_lm.py      Kneser-Ney estimation from annotations (preprocess/gloss_lm.py)
    split_logits.py  a split's saved logits (<split>-logits.pt of --phase test)
    tuning.py        LM weight / word bonus search on saved logits (tune_lm.py)
"""
