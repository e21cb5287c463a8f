" routelang: inference-routing rules (*.route)
autocmd BufRead,BufNewFile *.route setfiletype route
