"""Chinese words for the e-commerce generator (``recengine data generate --domain ecommerce --language zh``).

Each English category of :mod:`recengine.plugins.domains.ecommerce` has its Chinese name and
word lists of the same lengths in the same order, so a Chinese catalogue made with a seed is
the English one with the same seed, word for word: the same products, prices, brands and
events, only the text (and the category's name) in Chinese. That parallel catalogue is what
a bilingual embedding check compares.
"""

from __future__ import annotations

# category: (Chinese name, product nouns, adjectives, selling points), parallel to ecommerce.CATEGORIES
CATEGORIES_ZH: dict[str, tuple[str, list[str], list[str], list[str]]] = {
    "electronics": ("数码电子", ["耳机", "入耳式耳机", "音箱", "充电器", "智能手表", "平板电脑"],
                    ["无线", "蓝牙", "便携", "智能", "主动降噪"], ["超长续航", "快速充电", "USB-C 接口", "语音控制"]),
    "computers": ("电脑办公", ["笔记本电脑", "显示器", "键盘", "鼠标", "摄像头", "路由器"],
                  ["电竞", "人体工学", "机械", "超宽屏", "背光"],
                  ["高速处理器", "大容量内存", "4K 屏幕", "支持 WiFi 6"]),
    "kitchen": ("厨房用品", ["搅拌机", "煎锅", "刀具套装", "电水壶", "咖啡机", "烤面包机"],
                ["不锈钢", "不粘", "电动", "铸铁", "可洗碗机清洗"], ["受热均匀", "锋利刀刃", "易于清洁", "定时冲泡"]),
    "furniture": ("家具", ["沙发", "书桌", "书架", "扶手椅", "床架", "餐桌"],
                  ["橡木", "软包", "现代", "可折叠", "中古风"], ["实木桌腿", "安装简单", "隐藏收纳", "防污面料"]),
    "beauty": ("美妆护肤", ["精华液", "保湿霜", "口红", "洗发水", "面膜", "香水"],
               ["补水", "有机", "纯素", "无香料", "哑光"], ["玻尿酸", "维生素 C", "天然植物油", "全天持妆"]),
    "clothing": ("服装", ["T 恤", "连帽卫衣", "牛仔裤", "连衣裙", "夹克", "毛衣"],
                 ["纯棉", "修身", "宽松", "亚麻", "防水"], ["休闲剪裁", "透气面料", "加固缝线", "深口袋"]),
    "shoes": ("鞋靴", ["运动鞋", "靴子", "凉鞋", "乐福鞋", "跑鞋", "拖鞋"],
              ["真皮", "缓震", "轻便", "麂皮", "防滑"], ["记忆棉鞋垫", "橡胶大底", "足弓支撑", "宽楦设计"]),
    "sports": ("运动健身", ["瑜伽垫", "哑铃", "网球拍", "足球", "弹力带", "自行车头盔"],
               ["可调节", "专业", "训练", "耐用", "防滑握把"], ["防滑表面", "便携背带", "减震吸能", "比赛标准重量"]),
    "outdoors": ("户外", ["帐篷", "睡袋", "背包", "头灯", "露营炉", "净水器"],
                 ["超轻", "全天候", "保暖", "徒步", "越野"], ["防雨外帐", "压缩收纳袋", "水袋隔层", "四季适用"]),
    "toys": ("玩具", ["积木", "拼图", "毛绒熊", "玩具车", "桌游", "娃娃屋"],
             ["益智", "彩色", "木制", "互动", "经典"], ["安全圆角", "耐玩", "全家同乐", "锻炼动手能力"]),
    "books": ("图书", ["小说", "菜谱", "传记", "惊悚小说", "奇幻系列", "旅行指南"],
              ["畅销", "插图版", "平装", "精装", "获奖"], ["情节扣人心弦", "人物鲜活", "专业食谱", "精美摄影"]),
    "grocery": ("食品杂货", ["橄榄油", "咖啡豆", "绿茶", "意大利面", "燕麦片", "黑巧克力"],
                ["有机", "公平贸易", "无麸质", "烘焙", "手工"], ["风味浓郁", "天然原料", "无添加糖", "可重复密封袋"]),
    "pets": ("宠物用品", ["狗粮", "猫砂", "宠物床", "磨牙玩具", "牵引绳", "鱼缸过滤器"],
             ["无谷", "护骨", "耐咬", "反光", "除臭"], ["真鸡肉", "可水洗外套", "兽医认可配方", "加厚手柄"]),
    "garden": ("园艺", ["花园水管", "修枝剪", "花盆", "割草机", "种子套装", "洒水壶"],
               ["伸缩", "陶瓷", "无线", "传家品种", "镀锌"], ["防锈", "锋利剪刃", "排水孔", "碎草模式"]),
    "automotive": ("汽车用品", ["车载充电器", "行车记录仪", "脚垫", "充气泵", "座椅套", "雨刮片"],
                   ["全天候", "重型", "通用", "数显", "专车定制"], ["夜视功能", "胎压表", "安装方便", "贴合紧密"]),
    "baby": ("母婴", ["婴儿推车", "婴儿监视器", "妈咪包", "宝宝餐椅", "婴儿背带", "婴儿床单"],
             ["可折叠", "低敏", "可调节", "柔软", "多功能"], ["单手收车", "夜视功能", "有机棉", "五点式安全带"]),
}

# syllables of made-up Chinese brand names (two characters each: 星悦, 华源...)
BRAND_FIRST = ("星", "悦", "华", "优", "美", "康", "嘉", "乐", "安", "博", "晨", "锦", "盛", "青", "云", "致")
BRAND_SECOND = ("达", "源", "科", "佳", "品", "创", "航", "途", "泰", "颂", "澜", "森", "尚", "禾")


def brand_names(codes: list[int]) -> list[str]:
    """Chinese brand names for codes ``0 <= code < len(BRAND_FIRST) * len(BRAND_SECOND)``, numbered past that."""
    size = len(BRAND_FIRST) * len(BRAND_SECOND)
    out = []
    for code in codes:
        repeat, rest = divmod(code, size)
        first, second = divmod(rest, len(BRAND_SECOND))
        out.append(BRAND_FIRST[first] + BRAND_SECOND[second] + (str(repeat + 1) if repeat else ""))
    return out
